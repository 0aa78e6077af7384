"""Feature backbones for the metrics, their weights, and the on-disk feature cache.

Backbones take uint8 ``[B, 3, H, W]`` tensors (what every reference evaluates) and say
what they are through ``backbone`` / ``weights_id`` / ``resolution`` / ``resize``, which
go into the :class:`~evalkit.protocol.Protocol` and into the cache key.

``weights="pretrained"`` loads a verified file from :mod:`evalkit.weights` (one-line
EvalkitError when missing); ``weights="random"`` builds the same architecture with a
deterministic seeded initialisation, recorded as ``random-init(seed=S)``.

Cache: :class:`FeatureCache` stores one ``.npy`` per entry under
``<root>/<namespace>/<key[:2]>/<key>.npy`` where ``namespace`` hashes the protocol
(backbone, weights id, resolution, resize) and ``key`` hashes image content (see
:func:`evalkit.images.content_hash`). Writes are atomic (temp file + ``os.replace``), so a
run killed at any point leaves only complete entries and a re-run recomputes nothing done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from evalkit import weights as W
from evalkit.errors import EvalkitError
from evalkit.images import clean_resize_batch
from evalkit.protocol import random_init_tag

WEIGHT_CHOICES = ("pretrained", "random")


def check_weights_choice(weights: str) -> None:
    if weights not in WEIGHT_CHOICES:
        raise EvalkitError(f"--weights must be one of {', '.join(WEIGHT_CHOICES)}, got '{weights}'")


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (model construction) under ``torch.manual_seed(seed)`` without
    disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def he_init_(net: nn.Module) -> nn.Module:
    """Seeded random initialisation that keeps activations O(1) through a deep network in
    eval mode: He-normal (fan_in, ReLU) convolutions / linears, zero biases, identity
    batch norm. (torchvision's Inception ``init_weights`` draws N(0, 0.1) regardless of
    fan-in, so random pool features reach ~1e11 and FID/KID overflow.)"""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def default_cache_dir() -> Path:
    return Path(os.environ.get("EVALKIT_CACHE", Path.home() / ".cache" / "evalkit" / "features"))


class FeatureCache:
    """Content-addressed store of small arrays; ``root=None`` keeps nothing."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    @staticmethod
    def namespace(**protocol) -> str:
        text = ";".join(f"{k}={protocol[k]}" for k in sorted(protocol))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}.npy"

    def get(self, namespace: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(namespace, key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # unreadable entry: recompute and overwrite it
            return None

    def put(self, namespace: str, key: str, value: np.ndarray) -> None:
        if self.root is None:
            return
        path = self._path(namespace, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(value), allow_pickle=False)
            os.chmod(tmp, W.plain_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def pair_key(*hashes: str) -> str:
    return hashlib.sha256("|".join(hashes).encode()).hexdigest()


def cached_per_item(cache: FeatureCache, namespace: str, keys: list[str], compute, batch_size: int,
                    advance=None) -> list[np.ndarray]:
    """Values for ``keys``: read from ``cache``, computing the missing ones with
    ``compute(indices) -> list of arrays`` in batches (each written as soon as it exists)."""
    out: list[np.ndarray | None] = [cache.get(namespace, k) for k in keys]
    first: dict[str, int] = {}
    missing = []
    for i, k in enumerate(keys):
        if out[i] is None and k not in first:
            first[k] = i
            missing.append(i)
    if advance:
        advance(len(keys) - len(missing))
    for start in range(0, len(missing), batch_size):
        idx = missing[start:start + batch_size]
        for i, value in zip(idx, compute(idx)):
            value = np.asarray(value)
            cache.put(namespace, keys[i], value)
            out[i] = value
        if advance:
            advance(len(idx))
    for i, k in enumerate(keys):
        if out[i] is None:
            out[i] = out[first[k]]
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- Inception


def fid_inception_v3(seed: int = 0) -> nn.Module:
    """pytorch-fid's FID Inception (torchvision Inception-v3, 1008 classes, with the FID
    blocks of clean-fid's port), seeded He-initialised; the layout of
    ``pt_inception-2015-12-05-6726825d.pth``."""
    from cleanfid import inception_pytorch as ip

    with seeded(seed):
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
        net.Mixed_5b = ip.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = ip.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = ip.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = ip.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = ip.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = ip.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = ip.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = ip.FIDInceptionE_1(1280)
        net.Mixed_7c = ip.FIDInceptionE_2(2048)
        he_init_(net)
    return net


class _Normalised(nn.Module):
    """``net`` on normalised input: ``"tf"`` maps 0..255 to ``(x - 128) / 128`` (clean-fid's
    TorchScript wrapper), ``"pm1"`` maps 0..1 to ``2x - 1`` (pytorch-fid)."""

    def __init__(self, net: nn.Module, kind: str):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        return self.net((x - 128) / 128 if self.kind == "tf" else 2 * x - 1)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise EvalkitError(f"--device: {err}; use auto, cpu or cuda[:N]") from err


class InceptionFID(nn.Module):
    """Inception-v3 pool features (2048-d) for FID / KID.

    mode ``"clean"`` (clean-fid, Parmar et al. 2022): clean bicubic resize to 299 on float
    (:func:`evalkit.images.clean_resize_batch`), then clean-fid's TorchScript Inception
    (``inception-2015-12-05.pt``, the TF graph of Heusel et al. 2017) on ``(x - 128) / 128``.
    mode ``"legacy"`` (pytorch-fid port, Seitzer): ``x / 255``, bilinear resize to 299 inside
    the model, ``2x - 1``, the FID Inception blocks with ``pt_inception-2015-12-05-6726825d.pth``.

    ``weights="random"``: clean mode uses torchvision's Inception-v3 (same topology as the TF
    graph, fc removed, pool features) and legacy mode the FID blocks, both with the seeded
    He initialisation of :func:`he_init_`. ``network`` replaces the network after the resize (any callable mapping
    float ``[B, 3, 299, 299]`` in [0, 255] to ``[B, D]``, e.g. a test's toy extractor);
    ``network_id`` then names it in the protocol. Runs on ``device`` (features come back on CPU).
    """

    resolution = 299

    def __init__(self, mode: str = "clean", weights: str = "pretrained", seed: int = 0, *,
                 network=None, network_id: str | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        self.device = resolve_device(device)
        if mode not in ("clean", "legacy"):
            raise EvalkitError(f"FID mode must be 'clean' or 'legacy', got '{mode}'")
        check_weights_choice(weights)
        self.mode = mode
        self.resize = "clean-pil-bicubic" if mode == "clean" else "legacy-torch-bilinear"
        self.calls = 0
        if network is not None:
            self.network = network.to(self.device) if isinstance(network, nn.Module) else network
            self.backbone = network_id or "custom"
            self.weights_id = network_id or "custom"
            return
        if mode == "clean":
            self.backbone = "inception-v3-cleanfid" if weights == "pretrained" else "inception-v3-torchvision"
            self.network = self._clean_network(weights, seed)
        else:
            self.backbone = "inception-v3-pytorch-fid"
            self.network = self._legacy_network(weights, seed)
        if weights == "random":
            self.weights_id = random_init_tag(seed)
        self.network.to(self.device)

    def _clean_network(self, weights: str, seed: int):
        if weights == "pretrained":
            path, self.weights_id = W.require("inception-cleanfid")
            from cleanfid.inception_torchscript import InceptionV3W

            return InceptionV3W(str(path.parent), download=False, resize_inside=False).eval()
        with seeded(seed):
            net = he_init_(torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False))
        net.fc = nn.Identity()
        return _Normalised(net, "tf").eval()

    def _legacy_network(self, weights: str, seed: int):
        if weights == "pretrained":
            path, self.weights_id = W.require("inception-pytorch-fid")  # fail before building
        net = fid_inception_v3(seed)
        if weights == "pretrained":
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        net.fc = nn.Identity()
        return _Normalised(net, "pm1").eval()

    @torch.no_grad()
    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        images_uint8 = images_uint8.to(self.device)
        if self.mode == "clean":
            x = clean_resize_batch(images_uint8, self.resolution)
        else:
            x = F.interpolate(images_uint8.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.network(x)
        return torch.as_tensor(feats).reshape(x.shape[0], -1).float().cpu()

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution=self.resolution, resize=self.resize)


# --------------------------------------------------------------------------- VGG19

VGG_LAYERS = {"relu1_2": 3, "relu4_2": 22, "relu5_2": 31}  # indices in torchvision vgg19().features


class VGG19Features(nn.Module):
    """torchvision VGG19 activations ``relu1_2``, ``relu4_2``, ``relu5_2`` at the images'
    own resolution; input ``x / 255`` normalised with the ImageNet mean / std. Runs on
    ``device``; activations stay there."""

    backbone = "vgg19-torchvision"
    resize = "none"

    def __init__(self, weights: str = "pretrained", seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__()
        check_weights_choice(weights)
        self.device = resolve_device(device)
        if weights == "pretrained":
            path, self.weights_id = W.require("vgg19")  # fail before building the network
        with seeded(seed):
            net = torchvision.models.vgg19(weights=None)
        if weights == "pretrained":
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        else:
            self.weights_id = random_init_tag(seed)
        self.features = net.features[: max(VGG_LAYERS.values()) + 1].eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.calls = 0
        self.to(self.device)

    @torch.no_grad()
    def forward(self, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        x = (images_uint8.to(self.device).float() / 255 - self.mean) / self.std
        out, wanted = {}, {v: k for k, v in VGG_LAYERS.items()}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution="native", resize=self.resize)
