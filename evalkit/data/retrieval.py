"""Exemplar retrieval for datasets without a published pair list.

As CoCosNet's authors describe it (microsoft/CoCosNet issue #10): VGG19 features after
the last max-pool (``pool5``, before the classifier) of every image, cosine similarity
``s(q, g) = <f_q, f_g> / (|f_q| |f_g|)`` between each query and every gallery image, and
the top-K gallery images, most similar first. The line ``query,e_1,...,e_K`` then gives
CoCosNet's easy exemplar (``e_1``) and hard exemplar (``e_K``) for training, and the test
exemplar ``e_1``. A query never retrieves itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.backbones import IMAGENET_MEAN, IMAGENET_STD, load_trunk
from evalkit.data.pairs import PairedDataset, image_to_tensor, open_image, write_pair_list
from evalkit.errors import EvalkitError

__all__ = ["VGG19Pool5", "image_features", "top_k_cosine", "build_pairs"]


class VGG19Pool5(torch.nn.Module):
    """torchvision VGG19 ``features`` (through pool5), flattened, of images in [-1, 1]
    ``[B, 3, H, W]`` (mapped to [0, 1], then ImageNet mean / std).

    ``weights="pretrained"`` loads ``vgg19-dcbb9e9d.pth`` through
    :func:`evalkit.backbones.load_trunk` (one-line EvalkitError when missing); ``"random"``
    is a seeded random init (tests): torchvision VGG's conv init on the trunk alone.
    """

    def __init__(self, weights: str = "pretrained", seed: int = 0):
        super().__init__()
        self.features, _ = load_trunk("vgg19", weights, seed, init="he-fan-out")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] → ``[B, D]`` pool5 features."""
        x = ((images + 1) / 2 - self.mean) / self.std
        return self.features(x).flatten(1)


def image_features(net: VGG19Pool5, paths: list[Path], size: int = 224, batch_size: int = 16,
                   progress: bool = True) -> torch.Tensor:
    """pool5 features of images resized (bicubic) to ``size`` x ``size``."""
    feats = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch = torch.stack([image_to_tensor(open_image(p).resize((size, size), Image.BICUBIC)) for p in chunk])
        feats.append(net(batch))
        if progress:
            print(f"\rfeatures {min(start + batch_size, len(paths))}/{len(paths)}", end="", file=sys.stderr)
    if progress and paths:
        print(file=sys.stderr)
    return torch.cat(feats)


def top_k_cosine(query: torch.Tensor, gallery: torch.Tensor, k: int,
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[Q, k]`` and cosine similarities of the ``k`` most similar gallery rows,
    most similar first; ``exclude[q]`` (a gallery index or -1) is never returned for ``q``."""
    q = torch.nn.functional.normalize(query.double(), dim=1)
    g = torch.nn.functional.normalize(gallery.double(), dim=1)
    sim = q @ g.T
    if exclude is not None:
        rows = np.nonzero(exclude >= 0)[0]
        sim[rows, exclude[rows]] = -torch.inf
    k = min(k, gallery.shape[0] - (1 if exclude is not None and (exclude >= 0).any() else 0))
    if k < 1:
        raise EvalkitError("retrieval needs at least one gallery image besides the query itself")
    vals, idx = sim.topk(k, dim=1)
    return idx.numpy(), vals.numpy()


def build_pairs(query_ds: PairedDataset, gallery_ds: PairedDataset, out: str | Path, *, k: int = 5,
                weights: str = "pretrained", seed: int = 0, size: int = 224, progress: bool = True) -> Path:
    """Write a pair list ``query,e_1..e_K`` retrieving from ``gallery_ds`` for every query of ``query_ds``."""
    net = VGG19Pool5(weights, seed)
    q_keys = [it.key for it in query_ds.items]
    g_keys = [it.key for it in gallery_ds.items]
    q_paths = [query_ds.image_path(key, False) for key in q_keys]
    g_paths = [gallery_ds.image_path(key, True) for key in g_keys]
    missing = [str(p) for p in q_paths + g_paths if not p.is_file()]
    if missing:
        raise EvalkitError(f"image not found: {missing[0]} ({len(missing)} missing in all); run `evalkit data check`")
    qf = image_features(net, q_paths, size, progress=progress)
    gf = image_features(net, g_paths, size, progress=progress)
    g_index = {p.resolve(): i for i, p in enumerate(g_paths)}
    exclude = np.array([g_index.get(p.resolve(), -1) for p in q_paths])
    idx, _ = top_k_cosine(qf, gf, k, exclude)
    return write_pair_list(out, {qk: [g_keys[j] for j in row] for qk, row in zip(q_keys, idx)})
