"""Every user of the one trunk loader (evalkit.backbones.load_trunk) against an independent
construction: plain torchvision (or clean-fid's FID blocks) with the seeded initialisation
restated here, equal to 1e-5 of the activations' scale (the metric extractors run channels_last,
whose NHWC kernels round differently from the contiguous reference; issue 15); and the
pretrained path through a registered stand-in file."""

from __future__ import annotations

import math

import dataclasses
import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models import vgg as tv_vgg

from evalkit import weights as W
from evalkit.backbones import TRUNKS, advance_default_generator, load_trunk
from evalkit.data.retrieval import VGG19Pool5
from evalkit.errors import EvalkitError
from evalkit.features import InceptionFID, VGG19Features
from evalkit.methods.common.vgg import LAYERS, PerceptualVGG19
from evalkit.metrics import LPIPSAlex

def same(got: torch.Tensor, expect: torch.Tensor) -> bool:
    """Equal to 1e-5 relative to the reference's largest magnitude (channels_last vs contiguous)."""
    return got.shape == expect.shape and bool((got - expect).abs().max() <= 1e-5 * expect.abs().max().clamp_min(1e-30))


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def x_uint8():
    g = torch.Generator().manual_seed(11)
    return torch.randint(0, 256, (2, 3, 48, 48), generator=g, dtype=torch.uint8)


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path / "weights"))


def _he(net, mode="fan_in"):
    """He et al. 2015, eq. 10 restated: w ~ N(0, 2 / fan), zero biases, identity batch norm."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            m.weight.data.normal_(0.0, math.sqrt(2.0 / (fan_in if mode == "fan_in" else fan_out)))
            if m.bias is not None:
                m.bias.data.zero_()
    return net


def _acts(features, x, wanted):
    out = {}
    with torch.no_grad():
        for i, layer in enumerate(features[: max(wanted) + 1]):
            x = layer(x)
            if i in wanted:
                out[i] = x.clone()
    return out


def _assert_frozen(net):
    assert not net.training and not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("seed", [0, 3])
def test_metric_vgg19_is_torchvision_vgg19_seeded(x_uint8, seed):
    ours = VGG19Features("random", seed)
    torch.manual_seed(seed)
    ref = torchvision.models.vgg19(weights=None).features
    expect = _acts(ref, (x_uint8.float() / 255 - MEAN) / STD, {3, 22, 31})
    got = ours(x_uint8)
    for name, i in (("relu1_2", 3), ("relu4_2", 22), ("relu5_2", 31)):
        assert same(got[name], expect[i])
    assert ours.weights_id == f"random-init(seed={seed})"
    _assert_frozen(ours.features)


@pytest.mark.parametrize("name,reference", [("vgg19", lambda: torchvision.models.vgg19(weights=None).features),
                                            ("alexnet", lambda: torchvision.models.alexnet(weights=None).features)])
@pytest.mark.parametrize("seed", [0, 5])
def test_random_trunks_are_torchvisions_construction_bit_for_bit(name, reference, seed):
    """The trunks built without their classifiers' draws hold torchvision's seeded values exactly
    (same keys, shapes and bits), and the caller's RNG is untouched."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ours, _ = load_trunk(name, "random", seed)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(seed)
    ref = reference().state_dict()
    got = ours.state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.mark.parametrize("n", [0, 1, 5, 619, 620, 621, 624, 1249, 1_000_003])
def test_advancing_the_generator_is_drawing_uniforms(n):
    """n float32 uniform_ entries move torch's generator exactly as advance_default_generator(n):
    the same state bytes, and the same draws after (the state part-way into the 624-word block)."""
    torch.manual_seed(4)
    torch.empty(5).uniform_()
    start = torch.get_rng_state()
    torch.empty(n).uniform_()
    drawn, next_drawn = torch.get_rng_state(), torch.randn(40)
    torch.set_rng_state(start)
    advance_default_generator(n)
    assert torch.equal(torch.get_rng_state(), drawn) and torch.equal(torch.randn(40), next_drawn)


@pytest.mark.parametrize("seed", [0, 2])
def test_lpips_trunk_is_torchvision_alexnet_seeded(x_uint8, seed):
    ours = LPIPSAlex("random", seed)
    torch.manual_seed(seed)
    ref = torchvision.models.alexnet(weights=None).features
    x = ours.model.scaling_layer(x_uint8.float() / 127.5 - 1)
    expect = _acts(ref, x, {1, 4, 7, 9, 11})  # lpips' relu1..relu5
    assert all(same(g, expect[i]) for g, i in zip(ours.model.net.forward(x), (1, 4, 7, 9, 11)))
    assert ours.weights_id == f"random-init(seed={seed})"
    _assert_frozen(ours.model)


def _upstream_fid_inception(monkeypatch):
    """clean-fid's own pytorch-fid recipe (``fid_inception_v3``), its weights download disabled."""
    from cleanfid import inception_pytorch as ip

    monkeypatch.setattr(ip, "load_state_dict_from_url", lambda *args, **kwargs: None)
    monkeypatch.setattr(torchvision.models.Inception3, "load_state_dict", lambda self, *args, **kwargs: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its torchvision `pretrained=` argument
        return ip.fid_inception_v3()


@pytest.mark.parametrize("mode", ["clean", "legacy"])
def test_inception_is_torchvision_inception_he_seeded(x_uint8, mode, monkeypatch):
    ours = InceptionFID(mode, "random", 1)
    torch.manual_seed(1)
    if mode == "clean":
        ref = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    else:
        ref = _upstream_fid_inception(monkeypatch)
    _he(ref).fc = nn.Identity()
    ref.eval()
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(5)) * 255
    with torch.no_grad():
        expect = ref((x - 128) / 128 if mode == "clean" else 2 * (x / 255) - 1)
        got = ours.network(x if mode == "clean" else x / 255)
    assert got.shape == (1, 2048) and same(got, expect)
    _assert_frozen(ours.network)


def _layerwise_vgg19(width, seed):
    """VGG19's conv trunk at ``width``, each conv default-initialised then He fan-in, in order."""
    cfg = [v if v == "M" else v * width // 64 for v in tv_vgg.cfgs["E"]]
    net = tv_vgg.make_layers(cfg)  # the layer graph; its own draws are replaced below
    torch.manual_seed(seed)
    convs, in_c = [], 3
    for v in cfg:
        if v != "M":
            conv = nn.Conv2d(in_c, v, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            convs.append(conv)
            in_c = v
    for mine, fresh in zip([m for m in net if isinstance(m, nn.Conv2d)], convs):
        mine.load_state_dict(fresh.state_dict())
    return net


@pytest.mark.parametrize("width,seed", [(8, 0), (64, 0), (8, 5)])
def test_loss_vgg19_is_torchvision_layers_with_layerwise_he_init(x_uint8, width, seed):
    layers = ("relu1_1", "relu3_2", "relu5_2")
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        ours = PerceptualVGG19(layers, width=width, seed=seed)
    ref = _layerwise_vgg19(width, seed)
    relu_at = [i for i, m in enumerate(ref) if isinstance(m, nn.ReLU)]
    x = x_uint8.float() / 127.5 - 1
    expect = _acts(ref, ((x + 1) / 2 - MEAN) / STD, set(relu_at))
    got = ours(x)
    assert set(got) == set(layers)
    for name in layers:
        assert same(got[name], expect[relu_at[LAYERS.index(name)]])
    assert len(ours.features) == relu_at[LAYERS.index("relu5_2")] + 1  # nothing past the last layer asked for
    assert ours.pretrained is False and ours.weights_sha256 is None
    _assert_frozen(ours)


def test_retrieval_pool5_is_torchvision_vgg_conv_init_seeded(x_uint8):
    ours = VGG19Pool5("random", 4)
    torch.manual_seed(4)
    ref = tv_vgg.make_layers(tv_vgg.cfgs["E"])
    for m in ref.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    x = x_uint8.float() / 127.5 - 1
    with torch.no_grad():
        expect = ref.eval()(((x + 1) / 2 - MEAN) / STD).flatten(1)
    assert same(ours(x), expect)


def test_loader_leaves_the_callers_rng_alone():
    torch.manual_seed(9)
    expect = torch.rand(3)
    torch.manual_seed(9)
    for name in ("vgg19", "alexnet"):
        load_trunk(name, "random", 0)
    load_trunk("vgg19", "random", 0, init="he-fan-in-per-layer", width=8)
    assert torch.equal(torch.rand(3), expect)


def test_a_file_is_loaded_without_drawing_the_init_it_replaces(tmp_path, monkeypatch):
    """The architecture a file fills is built on meta: no initialiser touches real memory, every
    tensor is the file's, in the architecture's dtype (a float16 file is held as float32), and
    nothing is left on meta."""
    from evalkit.backbones import load_user_file

    torch.manual_seed(3)
    ref = torchvision.models.vgg19(weights=None).features
    torch.save({f"features.{k}": v.half() for k, v in ref.state_dict().items()}, tmp_path / "half.pth")
    drawn = []
    real_init = nn.init.kaiming_uniform_

    def recorded(tensor, *args, **kwargs):
        drawn.append(tensor.device.type)
        return real_init(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", recorded)
    net, _ = load_user_file("vgg19", tmp_path / "half.pth")
    assert drawn and set(drawn) == {"meta"}  # Conv2d's reset ran, on meta only
    state = net.state_dict()
    assert state.keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert state[k].dtype == torch.float32 and not state[k].is_meta
        assert torch.equal(state[k], v.half().float())


def test_pretrained_vgg19_file_reaches_every_user_strictly(tmp_path, monkeypatch, x_uint8):
    """One stand-in vgg19 file (the conv trunk's keys, as in the real file) loads identically
    into the metrics' VGG, the losses' VGG and retrieval's pool5."""
    torch.manual_seed(21)
    ref = torchvision.models.vgg19(weights=None).features.eval()
    path = tmp_path / "weights" / W.REGISTRY["vgg19"].filename
    path.parent.mkdir()
    torch.save({f"features.{k}": v for k, v in ref.state_dict().items()}, path)
    digest = W.file_sha256(path)
    monkeypatch.setitem(W.REGISTRY, "vgg19", dataclasses.replace(W.REGISTRY["vgg19"], sha256=digest[:8]))
    x = x_uint8.float() / 127.5 - 1
    expect = _acts(ref, ((x + 1) / 2 - MEAN) / STD, {1, 31, 36})
    metric = VGG19Features("pretrained")
    metric_expect = _acts(ref, (x_uint8.float() / 255 - MEAN) / STD, {22})[22]  # the metric's own input scaling
    assert metric.weights_id == digest and same(metric(x_uint8)["relu4_2"], metric_expect)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = PerceptualVGG19(("relu1_1", "relu5_2"), width=64)
    assert not [w for w in caught if "RANDOMLY" in str(w.message)]
    assert loss.pretrained and loss.weights_sha256 == digest
    got = loss(x)
    assert same(got["relu1_1"], expect[1]) and same(got["relu5_2"], expect[31])
    assert same(VGG19Pool5("pretrained")(x), expect[36].flatten(1))
    with pytest.warns(UserWarning, match="narrow width=8"):  # a narrow VGG never takes the file
        assert PerceptualVGG19(("relu1_1",), width=8).pretrained is False
    path.write_bytes(b"truncated")
    with pytest.raises(EvalkitError, match="corrupt or wrong file"):
        VGG19Pool5("pretrained")


@pytest.mark.parametrize("name", sorted(TRUNKS))
def test_missing_file_is_one_line_naming_file_and_import(tmp_path, name):
    with pytest.raises(EvalkitError) as err:
        load_trunk(name, "pretrained")
    msg = str(err.value)
    assert W.REGISTRY[TRUNKS[name].weights_key].filename in msg and "evalkit weights import" in msg
    assert "\n" not in msg and not (tmp_path / "weights").exists()  # nothing built, nothing written


def test_loader_refuses_what_it_cannot_build():
    with pytest.raises(EvalkitError, match="--weights must be one of"):
        load_trunk("vgg19", "imagenet")
    with pytest.raises(ValueError, match="width 64"):
        load_trunk("vgg19", "pretrained", width=8)
    with pytest.raises(ValueError, match="width 64"):
        load_trunk("alexnet", "random", width=8)
    with pytest.raises(ValueError, match="random inits"):
        load_trunk("alexnet", "random", init="he-fan-out")
    with pytest.raises(ValueError, match="unknown trunk"):
        load_trunk("resnet50", "random")
