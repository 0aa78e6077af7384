"""The torchvision trunks behind every feature network, and the one loader that builds them.

:func:`load_trunk` builds a registered trunk (:data:`TRUNKS`), then either loads its
pretrained file from :mod:`evalkit.weights` strictly (sha256-verified; a missing file is
one :class:`EvalkitError` line naming the file and ``evalkit weights import``) or draws a
seeded random initialisation, recorded as ``random-init(seed=S)``; the result is frozen
(eval mode, no gradients). Users: the metrics (:mod:`evalkit.features`: Inception-v3, VGG19;
:mod:`evalkit.metrics.lpips`: AlexNet), the training losses
(:mod:`evalkit.methods.common.vgg`) and exemplar retrieval (:mod:`evalkit.data.retrieval`).
A trunk takes what its torchvision network takes; the input range is the caller's class's
business (each of those classes names its input range in its docstring).

Random initialisations, all drawn under ``torch.manual_seed(seed)`` in a forked RNG (the
caller's global RNG is untouched); each user keeps the one it always had, so numbers stay
put:

- ``"torchvision"``: the torchvision constructor's own init (VGG19 for the metrics, AlexNet);
- ``"he-fan-in"``: after construction, He-normal (fan-in, ReLU gain) on every conv / linear,
  zero biases, identity batch norm (:func:`he_init_`; Inception, whose torchvision init
  draws N(0, 0.1) regardless of fan-in, so random pool features would reach ~1e11);
- ``"he-fan-out"``: the same with fan-out on VGG19's conv trunk alone (torchvision VGG's conv
  init without its classifier; retrieval);
- ``"he-fan-in-per-layer"``: each conv of VGG19's trunk drawn with PyTorch's default init and
  immediately re-drawn He-normal fan-in (the training losses; any ``width``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from evalkit import weights as W
from evalkit.errors import EvalkitError
from evalkit.protocol import random_init_tag

WEIGHT_CHOICES = ("pretrained", "random")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the torchvision trunks' input normalisation (RGB in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_weights_choice(weights: str) -> None:
    if weights not in WEIGHT_CHOICES:
        raise EvalkitError(f"--weights must be one of {', '.join(WEIGHT_CHOICES)}, got '{weights}'")


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run a block (model construction) under ``torch.manual_seed(seed)`` (``None``: unseeded)
    without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def he_init_(net: nn.Module, mode: str = "fan_in") -> nn.Module:
    """He-normal (``mode``, ReLU gain) convolutions / linears, zero biases, identity batch
    norm: activations stay O(1) through a deep random network in eval mode."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


# ------------------------------------------------------------------ the generator, advanced

_CPU_GENERATOR_STATE_BYTES = 5056  # sizeof(at::CPUGeneratorImplState), what torch.get_rng_state() returns


def advance_default_generator(n: int) -> None:
    """Advance torch's default CPU generator (MT19937) by ``n`` 32-bit outputs, as ``n`` float32
    ``uniform_`` entries would, bit for bit, with nothing allocated: numpy's raw MT19937 at about
    2.6 ns an output (drawing them into fresh memory: about 4.4 ns an entry). The state is moved
    across: torch's ``CPUGeneratorImplState`` holds the 624 state words (as uint64) after a
    header (seed, ``left``, ``seeded``, ``next``), with ``left + next = 625``; numpy's MT19937
    holds them as ``key`` and ``pos = next`` (624: twist before the next output)."""
    if n <= 0:
        return
    state = torch.get_rng_state().numpy().copy()
    if state.size != _CPU_GENERATOR_STATE_BYTES:  # another layout: refuse rather than draw other values
        raise RuntimeError(f"torch's CPU generator state is {state.size} bytes, not {_CPU_GENERATOR_STATE_BYTES}: "
                           f"its layout changed, so its draws cannot be skipped")
    words = slice(24, 24 + 624 * 8)
    left = int(state[8:12].view(np.int32)[0])
    mt = np.random.MT19937(0)
    mt.state = {"bit_generator": "MT19937", "state": {"key": state[words].view(np.uint64).astype(np.uint32),
                                                      "pos": 625 - left}}
    mt.random_raw(n, output=False)  # advance only: nothing is stored
    pos = int(mt.state["state"]["pos"])
    state[8:12] = np.array([625 - pos], dtype=np.int32).view(np.uint8)
    state[16:24] = np.array([pos], dtype=np.uint64).view(np.uint8)
    state[words] = mt.state["state"]["key"].astype(np.uint64).view(np.uint8)
    torch.set_rng_state(torch.from_numpy(state))


# --------------------------------------------------------------------------- architectures

# torchvision's VGG19 ("E") trunk: channel multiples of width/64 (64 = VGG19), "M" = max-pool
_VGG19_CFG = (1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M")
# torchvision VGG's classifier, Linear 25088 -> 4096 -> 4096 -> 1000: its weights and biases
_VGG_CLASSIFIER_ENTRIES = sum(i * o + o for i, o in ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)))


def vgg19_layers(width: int = 64, per_layer_init: Callable[[nn.Conv2d], None] | None = None) -> nn.Sequential:
    """torchvision ``vgg19().features`` (Simonyan & Zisserman 2015, config E; same layers and
    indices as ``torchvision.models.vgg.make_layers``) with every width scaled by ``width / 64``;
    ``per_layer_init`` is applied to each conv as soon as it exists."""
    layers, in_c = [], 3
    for item in _VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(in_c, item * width, kernel_size=3, padding=1)
        if per_layer_init is not None:
            per_layer_init(conv)
        layers += [conv, nn.ReLU(inplace=True)]
        in_c = item * width
    return nn.Sequential(*layers)


def _torchvision_vgg19_features(width: int) -> nn.Sequential:
    """``torchvision.models.vgg19(weights=None).features``, equal bit for bit under one seed,
    without its classifier: torchvision draws the trunk's default init, then the classifier's
    (124 M entries, 0.5 GB: they set where the trunk's He draws start in the generator's stream,
    so the generator is advanced past them, :func:`advance_default_generator`), then He fan-out
    on the trunk, then the classifier's N(0, 0.01) (last in the stream: not drawn)."""
    if width != 64:
        raise ValueError(f"torchvision's VGG19 init builds width 64, got {width}")
    features = vgg19_layers(64)
    advance_default_generator(_VGG_CLASSIFIER_ENTRIES)  # the classifier's construction draws, not made
    return he_init_(features, "fan_out")


def _torchvision_alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet(weights=None).features`` (Krizhevsky 2014, torchvision's
    layers and indices). Its classifier is built after it, so under one seed the trunk's
    default init is the same bit for bit without drawing the classifier's 58 M weights."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))


def _he_fan_in_conv(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(conv.bias)


def fid_inception_v3(seed: int | None = None) -> nn.Module:
    """pytorch-fid's FID Inception (torchvision Inception-v3, 1008 classes, with the FID
    blocks of clean-fid's port), the layout of ``pt_inception-2015-12-05-6726825d.pth``;
    He-initialised under ``seed`` (``None``: inside the caller's RNG)."""
    from cleanfid import inception_pytorch as ip
    from torchvision.models import inception_v3

    with seeded(seed):
        net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
        net.Mixed_5b = ip.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = ip.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = ip.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = ip.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = ip.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = ip.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = ip.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = ip.FIDInceptionE_1(1280)
        net.Mixed_7c = ip.FIDInceptionE_2(2048)
        return he_init_(net)


def _torchvision_inception() -> nn.Module:
    from torchvision.models import inception_v3  # here: importing torchvision costs 1.5 s (torch._dynamo)

    return inception_v3(weights=None, aux_logits=False, init_weights=False)


class _Normalised(nn.Module):
    """``net`` (its classifier dropped) on normalised input: ``"tf"`` maps 0..255 to
    ``(x - 128) / 128`` (clean-fid's TorchScript wrapper), ``"pm1"`` maps 0..1 to ``2x - 1``
    (pytorch-fid)."""

    def __init__(self, net: nn.Module, kind: str):
        super().__init__()
        net.fc = nn.Identity()
        self.net, self.kind = net, kind

    def forward(self, x):
        return self.net((x - 128) / 128 if self.kind == "tf" else 2 * x - 1)


class CaffeVGG19(nn.Module):
    """VGG19's 16 convolutions under the names of the CoCosNet/UNITE scripts' ``vgg19_conv.pth``
    (``conv1_1`` ... ``conv5_4``; fnzhan/UNITE ``util/vgg_style_relevance.py:13-80``), max
    pooling, ReLU after every convolution. ``forward(x, layers)`` returns the named ReLU
    outputs (``relu1_2``, ``relu4_2``, ...) of input ``x`` as the scripts feed it (BGR,
    Caffe-mean-subtracted, 0..255 scale: see :mod:`evalkit.protocols.unite`). Random init:
    PyTorch's default ``nn.Conv2d`` initialisation, layer by layer."""

    BLOCKS = (2, 2, 4, 4, 4)
    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self):
        super().__init__()
        in_c = 3
        for b, (n, w) in enumerate(zip(self.BLOCKS, self.WIDTHS), start=1):
            for i in range(1, n + 1):
                setattr(self, f"conv{b}_{i}", nn.Conv2d(in_c, w, kernel_size=3, padding=1))
                in_c = w

    def forward(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        out, last = {}, max(self._order(l) for l in layers)
        k = 0
        for b, n in enumerate(self.BLOCKS, start=1):
            if b > 1:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for i in range(1, n + 1):
                x = F.relu(getattr(self, f"conv{b}_{i}")(x))
                if f"relu{b}_{i}" in layers:
                    out[f"relu{b}_{i}"] = x
                if k == last:
                    return out
                k += 1
        return out

    def _order(self, layer: str) -> int:
        b, i = (int(v) for v in layer.removeprefix("relu").split("_"))
        if not (1 <= b <= 5 and 1 <= i <= self.BLOCKS[b - 1]):
            raise ValueError(f"CaffeVGG19 has no layer {layer!r}")
        return sum(self.BLOCKS[:b - 1]) + i - 1


def _cleanfid_inception(path: Path) -> nn.Module:
    from cleanfid.inception_torchscript import InceptionV3W

    return InceptionV3W(str(path.parent), download=False, resize_inside=False)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class TrunkSpec:
    """One trunk. ``random``: init scheme -> builder of the randomly initialised network at
    ``width`` (run under the seeded RNG; the first scheme is the default). Pretrained: the
    file of ``weights_key`` is either loaded strictly (keys under ``prefix``) into
    ``architecture()`` or, with ``open_file``, is itself the network. ``head`` is applied
    to either (e.g. drop the classifier, normalise the input)."""

    weights_key: str
    random: dict[str, Callable[[int], nn.Module]]
    architecture: Callable[[], nn.Module] | None = None
    prefix: str = ""
    open_file: Callable[[Path], nn.Module] | None = None
    head: Callable[[nn.Module], nn.Module] | None = None
    any_width: bool = False


TRUNKS: dict[str, TrunkSpec] = {
    # VGG19's conv trunk (``features``, through pool5), input ImageNet-normalised RGB in [0, 1]
    "vgg19": TrunkSpec(
        weights_key="vgg19",
        random={
            "torchvision": _torchvision_vgg19_features,
            "he-fan-out": lambda width: he_init_(vgg19_layers(width), "fan_out"),
            "he-fan-in-per-layer": lambda width: vgg19_layers(width, per_layer_init=_he_fan_in_conv),
        },
        architecture=vgg19_layers, prefix="features.", any_width=True),
    # AlexNet's conv trunk (``features``), ImageNet-normalised input
    "alexnet": TrunkSpec(
        weights_key="alexnet",
        random={"torchvision": lambda width: _torchvision_alexnet_features()},
        architecture=_torchvision_alexnet_features, prefix="features."),
    # Inception-v3 pool features (2048-d) of float [B, 3, 299, 299] in [0, 255]: pretrained is
    # clean-fid's TorchScript of the TF graph (Heusel et al. 2017), random torchvision's topology
    "inception-v3": TrunkSpec(
        weights_key="inception-cleanfid",
        random={"he-fan-in": lambda width: _Normalised(he_init_(_torchvision_inception()), "tf")},
        open_file=_cleanfid_inception),
    # pytorch-fid's FID Inception pool features (2048-d) of float [B, 3, 299, 299] in [0, 1]
    "inception-v3-fid": TrunkSpec(
        weights_key="inception-pytorch-fid",
        random={"he-fan-in": lambda width: fid_inception_v3()},
        architecture=fid_inception_v3, head=lambda net: _Normalised(net, "pm1")),
    # the CoCosNet/UNITE scripts' Caffe VGG19 (vgg19_conv.pth, keys conv1_1.weight ...), protocol unite2021
    "vgg19-caffe": TrunkSpec(
        weights_key="vgg19-caffe",
        random={"torchvision": lambda width: CaffeVGG19()},
        architecture=CaffeVGG19),
}


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_trunk(name: str, weights: str = "pretrained", seed: int = 0, *, init: str | None = None,
               width: int = 64, device: str | torch.device = "cpu",
               weights_file: str | Path | None = None, weights_files: dict | None = None) -> tuple[nn.Module, str]:
    """``(network, weights_id)`` of trunk ``name`` (a key of :data:`TRUNKS`), frozen, on ``device``.

    ``weights="pretrained"``: the registered file, sha256-verified, loaded strictly;
    ``weights_id`` is its full sha256. ``"random"``: scheme ``init`` (default: the trunk's
    first) under ``seed``; ``weights_id`` is ``random-init(seed=S)``. ``width`` (VGG19 only)
    scales every layer's width; pretrained files need 64. ``weights_file`` (or
    ``weights_files[<the trunk's weights key>]``, what ``--weights-file KEY=PATH`` gives): a
    file the registry does not know, loaded strictly into the same architecture
    (:func:`load_user_file`) whatever ``weights`` says; ``weights_id`` is ``unregistered:<sha256>``.
    """
    check_weights_choice(weights)
    if name not in TRUNKS:
        raise ValueError(f"unknown trunk '{name}'; known: {', '.join(TRUNKS)}")
    spec = TRUNKS[name]
    if weights_file is None and weights_files:
        weights_file = weights_files.get(spec.weights_key)
    if weights_file is not None:
        net, weights_id = load_user_file(name, weights_file)
    else:
        if width != 64 and not (spec.any_width and weights == "random"):
            raise ValueError(f"trunk '{name}' with {weights} weights has width 64, got {width}")
        if weights == "pretrained":
            path, weights_id = W.require(spec.weights_key)  # fail before building anything
            if spec.open_file is not None:
                net = spec.open_file(path)
            elif not W.REGISTRY[spec.weights_key].digest_published:  # no digest: its layout is the check
                net, _ = load_user_file(name, path, what=f"weights file {path} ({spec.weights_key})")
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
                net = _loaded_into_architecture(spec, {k[len(spec.prefix):]: v for k, v in state.items()
                                                       if k.startswith(spec.prefix)})
        else:
            init = init or next(iter(spec.random))
            if init not in spec.random:
                raise ValueError(f"trunk '{name}' has random inits {', '.join(spec.random)}, got '{init}'")
            with seeded(seed):
                net = spec.random[init](width)
            weights_id = random_init_tag(seed)
    if spec.head is not None:
        net = spec.head(net)
    return freeze(net).to(device), weights_id


def channels_last(net: nn.Module) -> nn.Module:
    """``net`` in channels_last layout, as the metric extractors run it: the same numbers to float
    rounding (~1e-6 relative), 1.2-1.9x the contiguous throughput on CPU for VGG19 and
    Inception-v3 at the metrics' sizes (oneDNN's NHWC kernels). Not for the narrow training VGG,
    which it slows."""
    return net.to(memory_format=torch.channels_last)


def _listed(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_user_file(name: str, path: str | Path, *, what: str | None = None) -> tuple[nn.Module, str]:
    """Trunk ``name``'s architecture with the state dict of ``path`` (``--weights-file``), loaded
    strictly: every key of the architecture present with its shape, no other key (keys outside
    the trunk's ``prefix``, e.g. a classifier, are ignored as for the registered file). One
    :class:`EvalkitError` naming the missing, unexpected and mis-shaped keys otherwise.
    Returns ``(network, "unregistered:<sha256 of the file>")``: numbers computed with it are
    comparable only with numbers from the same file."""
    spec = TRUNKS[name]
    path = Path(path)
    what = what or f"--weights-file {spec.weights_key}={path}"
    if not path.is_file():
        raise EvalkitError(f"{what}: no such file; give the path of a PyTorch state dict", path=path)
    if spec.architecture is None:
        raise EvalkitError(f"{what}: {spec.weights_key} is a TorchScript network, not a state dict evalkit can load "
                           f"into an architecture; use the registered file (`evalkit weights import`)", path=path)
    digest = W.file_sha256(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same bad input
        raise EvalkitError(f"{what}: not a PyTorch state dict ({type(err).__name__}: {str(err)[:120]})",
                           path=path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalkitError(f"{what}: expected a state dict (names -> tensors), got {type(state).__name__}", path=path)
    given = {k[len(spec.prefix):]: v for k, v in state.items() if k.startswith(spec.prefix)}
    with torch.device("meta"):  # nothing is drawn: every value comes from the file
        net = spec.architecture()
    expected = net.state_dict()
    missing = set(expected) - set(given)
    unexpected = set(given) - set(expected)
    shapes = [f"{k} {list(given[k].shape)} (expected {list(expected[k].shape)})" for k in sorted(set(given) & set(expected))
              if given[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = ([f"missing keys {_listed(missing)}"] if missing else []) + \
                ([f"unexpected keys {_listed(unexpected)}"] if unexpected else []) + \
                ([f"shape mismatch {_listed(shapes, 2)}"] if shapes else [])
        raise EvalkitError(f"{what}: does not fit the {name} architecture ({len(expected)} tensors{', under ' + repr(spec.prefix) if spec.prefix else ''}): "
                           + "; ".join(parts), path=path)
    return _assigned(net, given), f"unregistered:{digest}"


def _loaded_into_architecture(spec: TrunkSpec, state: dict[str, torch.Tensor]) -> nn.Module:
    """``spec.architecture()`` holding ``state`` (loaded strictly): built on the meta device and
    the file's tensors assigned (:func:`_assigned`), so the default initialisation the file
    replaces is never drawn (VGG19 0.084 -> 0.006 s, pytorch-fid's Inception 0.317 -> 0.159 s
    here: ``tests/benchmarks/bench_backbones.py -k files_load``)."""
    with torch.device("meta"):
        net = spec.architecture()
    return _assigned(net, state)


def _assigned(net: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """``net``, built on meta, holding ``state``: loaded strictly, each tensor assigned in the
    architecture's dtype; a tensor the state does not hold (a non-persistent buffer) is refused."""
    dtypes = {k: v.dtype for k, v in net.state_dict().items()}
    net.load_state_dict({k: v.to(dtypes[k]) if k in dtypes else v for k, v in state.items()}, strict=True, assign=True)
    left = [k for k, v in [*net.named_parameters(), *net.named_buffers()] if v.is_meta]
    if left:  # a tensor outside the state dict (a non-persistent buffer) would have no value
        raise RuntimeError(f"{type(net).__name__}: {', '.join(left)} not in the state dict; cannot build it on meta")
    return net
