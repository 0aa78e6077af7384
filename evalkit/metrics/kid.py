"""Kernel Inception Distance (Bińkowski et al., ICLR 2018, Sec. 3 / Eq. 4).

Unbiased MMD² with the cubic polynomial kernel ``k(x, y) = (x·y / d + 1)^3`` over
``subsets`` random subsets of ``m = min(N_a, N_b, subset_size)`` rows from each set:

    MMD²_u = [sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1))
             - 2 sum_{i,j} k(x_i, y_j) / m²

Returns (mean, std) over subsets (std with ddof=0, as torch-fidelity). Subsets are drawn
with ``np.random.RandomState(seed).choice(..., replace=False)`` in clean-fid's order (set b
first, then set a), so ``np.random.seed(seed)`` + ``cleanfid.fid.kernel_distance`` draws the
very same subsets.
"""

from __future__ import annotations

import numpy as np

from evalkit.errors import EvalkitError


def kid_subsets(n_a: int, n_b: int, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """The (indices into a, indices into b) pairs :func:`kid_from_features` uses."""
    m = min(n_a, n_b, subset_size)
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(subsets):
        ib = rs.choice(n_b, m, replace=False)
        ia = rs.choice(n_a, m, replace=False)
        out.append((ia, ib))
    return out


def kid_from_features(feats_a, feats_b, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
                      names: tuple[str, str] = ("feats_a", "feats_b")) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over the subsets of the module docstring. Both sets
    are checked first, as FID checks them (:func:`evalkit.metrics.registry.check_features`):
    every feature must be finite, whether or not a subset would draw it."""
    from evalkit.metrics.registry import check_features

    a, b = check_features(feats_a, names[0], "KID"), check_features(feats_b, names[1], "KID")
    if a.shape[1] != b.shape[1]:
        raise EvalkitError(f"KID: feature sizes differ: {a.shape[1]} ({names[0]}) vs {b.shape[1]} ({names[1]})")
    d = a.shape[1]
    mmds = []
    for ia, ib in kid_subsets(len(a), len(b), subsets=subsets, subset_size=subset_size, seed=seed):
        x, y = b[ib], a[ia]  # clean-fid's naming: x from the second set, y from the first
        m = len(ia)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        mmds.append(within - 2 * kxy.sum() / (m * m))
    mmds = np.asarray(mmds)
    return float(mmds.mean()), float(mmds.std())


# -- the ``kid`` family (evalkit.metrics.registry) ------------------------------------------
def _kid_compute(ctx) -> list[dict]:
    from evalkit.metrics.fid import inception_features

    fa, fb = inception_features(ctx)
    net, o = ctx.backbones["inception"], ctx.options
    mean, std = kid_from_features(fa, fb, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed,
                                  names=("generated", "real"))
    p = ctx.protocol(net, resolution=net.resolution)
    return [ctx.row("KID", o.fid_mode, mean, ctx.n, p), ctx.row("KID-std", o.fid_mode, std, ctx.n, p)]


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_metric

    register_metric(MetricSpec("kid", rows=(RowSpec("KID", higher_is_better=False, decimals=4),
                                            RowSpec("KID-std", higher_is_better=False, decimals=4, uncertainty=True)),
                               compute=_kid_compute, needs=("sets",), backbone="inception", shards=True, order=20,
                               from_stats=True))


_register()
