"""The metrics' feature networks and the on-disk feature cache.

Feature networks take uint8 ``[B, 3, H, W]`` tensors (what every reference evaluates) and
say what they are through ``backbone`` / ``weights_id`` / ``resolution`` / ``resize``, which
go into the :class:`~evalkit.protocol.Protocol` and into the cache key. Their trunks come
from :func:`evalkit.backbones.load_trunk`: ``weights="pretrained"`` loads a verified file
from :mod:`evalkit.weights` (one-line EvalkitError when missing); ``weights="random"``
builds the same architecture with a deterministic seeded initialisation, recorded as
``random-init(seed=S)``.

Cache: :class:`FeatureCache` stores one ``.npy`` per entry under
``<root>/<namespace>/<key[:2]>/<key>.npy`` where ``namespace`` hashes the protocol
(backbone, weights id, resolution, resize) and ``key`` hashes image content (see
:func:`evalkit.images.content_hash`). Entries are written with
:func:`evalkit.files.atomic_path`, so a run killed at any point leaves only complete
entries and a re-run recomputes nothing done.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evalkit.backbones import IMAGENET_MEAN, IMAGENET_STD, channels_last, check_weights_choice, load_trunk
from evalkit.devices import resolve_device
from evalkit.errors import EvalkitError
from evalkit.files import atomic_path
from evalkit.images import clean_resize_batch


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
        with atomic_path(self._path(namespace, key)) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(value), allow_pickle=False)  # a file object: np.save(path) would add ".npy"


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


class InceptionFID(nn.Module):
    """Inception-v3 pool features (2048-d) for FID / KID.

    mode ``"clean"`` (clean-fid, Parmar et al. 2022): clean bicubic resize to 299 on float
    (:func:`evalkit.images.clean_resize_batch`), then clean-fid's TorchScript Inception
    (``inception-2015-12-05.pt``, the TF graph of Heusel et al. 2017) on ``(x - 128) / 128``.
    mode ``"legacy"`` (pytorch-fid port, Seitzer): ``x / 255``, bilinear resize to 299 inside
    the model, ``2x - 1``, the FID Inception blocks with ``pt_inception-2015-12-05-6726825d.pth``.

    ``weights="random"``: clean mode uses torchvision's Inception-v3 (same topology as the TF
    graph, fc removed, pool features) and legacy mode the FID blocks, both with the seeded
    He initialisation of :func:`evalkit.backbones.he_init_`. ``network`` replaces the network
    after the resize (any callable mapping float ``[B, 3, 299, 299]`` in [0, 255] to ``[B, D]``,
    e.g. a test's toy extractor);
    ``network_id`` then names it in the protocol. Runs on ``device`` (features come back on CPU).
    """

    resolution = 299

    def __init__(self, mode: str = "clean", weights: str = "pretrained", seed: int = 0, *,
                 network=None, network_id: str | None = None, device: str | torch.device = "cpu",
                 weights_files: dict | None = None):
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
        else:
            self.backbone = "inception-v3-pytorch-fid"
        self.network, self.weights_id = load_trunk("inception-v3" if mode == "clean" else "inception-v3-fid",
                                                   weights, seed, device=self.device, weights_files=weights_files)
        self.network = channels_last(self.network)

    @torch.no_grad()
    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        images_uint8 = images_uint8.to(self.device)
        if self.mode == "clean":
            x = clean_resize_batch(images_uint8, self.resolution)
        else:
            x = F.interpolate(images_uint8.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.network(x.contiguous(memory_format=torch.channels_last))
        return torch.as_tensor(feats).reshape(x.shape[0], -1).float().cpu()

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution=self.resolution, resize=self.resize)


# --------------------------------------------------------------------------- VGG19

VGG_LAYERS = {"relu1_2": 3, "relu4_2": 22, "relu5_2": 31}  # indices in torchvision vgg19().features


class VGG19Features(nn.Module):
    """torchvision VGG19 activations ``relu1_2``, ``relu4_2``, ``relu5_2`` of uint8
    ``[B, 3, H, W]`` images (0..255) at their own resolution, fed as ``x / 255`` normalised
    with the ImageNet mean / std (the metrics' VGG; the training losses' is
    :class:`evalkit.methods.common.vgg.PerceptualVGG19`, on [-1, 1]). Runs on ``device``;
    activations stay there."""

    backbone = "vgg19-torchvision"
    resize = "none"

    def __init__(self, weights: str = "pretrained", seed: int = 0, device: str | torch.device = "cpu",
                 weights_files: dict | None = None):
        super().__init__()
        self.device = resolve_device(device)
        trunk, self.weights_id = load_trunk("vgg19", weights, seed, device=self.device, weights_files=weights_files)
        self.features = channels_last(trunk[: max(VGG_LAYERS.values()) + 1].eval())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.calls = 0
        self.to(self.device)

    @torch.no_grad()
    def forward(self, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        x = images_uint8.to(self.device).contiguous(memory_format=torch.channels_last).float()
        x = x.div_(255).sub_(self.mean).div_(self.std)
        out, wanted = {}, {v: k for k, v in VGG_LAYERS.items()}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def protocol_key(self) -> dict:
        return dict(backbone=self.backbone, weights=self.weights_id, resolution="native", resize=self.resize)
