"""Helpers for the translator tests: a micro configuration and synthetic batches."""

from __future__ import annotations

import torch

from evalkit.data import collate
from evalkit.methods.registry import variant_spec

# Smaller than the `tiny` preset so that every variant trains 20 steps within the CI budget.
_SHARED = dict(size=32, ngf=8, num_up=3, spade_hidden=16, ndf=8, n_layers_d=2, vgg_width=4)
_CORR = dict(feat_nc=16, enc_ngf=8)
MICRO = {
    "spade": dict(_SHARED, z_dim=16),
    "cocosnet": dict(_SHARED, **_CORR),
    "rabit": dict(_SHARED, **_CORR, confi_nc=8, topk_iters=10),
    "unite": dict(_SHARED, **_CORR, seace_attn_size=8, ot_iters=10),
}


def micro(variant: str) -> dict:
    """The micro overrides of ``variant``'s family (typed configs take only their own fields)."""
    return MICRO[variant_spec(variant).fields["family"]]


def make_batch(dataset, indices):
    return collate([dataset[i] for i in indices])


def one_hot_batch(channels: int, size: int = 32, batch: int = 1, seed: int = 0):
    """A synthetic Batch with a random one-hot condition of ``channels`` classes."""
    from evalkit.data import Batch

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, channels, (batch, size, size), generator=g)
    cond = torch.nn.functional.one_hot(labels, channels).permute(0, 3, 1, 2).float()
    img = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return Batch(cond=cond, image=img, exemplar=img.flip(-1), exemplar_cond=cond.flip(-1),
                 self_ref=torch.zeros(batch, dtype=torch.bool), name=[f"s{i}" for i in range(batch)],
                 exemplar_name=[f"e{i}" for i in range(batch)], label=labels, exemplar_label=labels.flip(-1),
                 query=[f"s{i}" for i in range(batch)])
