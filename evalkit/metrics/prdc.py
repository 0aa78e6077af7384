"""Precision / recall (Kynkäänniemi et al., NeurIPS 2019) and density / coverage (Naeem et
al., ICML 2020) from k-nearest-neighbour balls in feature space.

With ``r_k(x)`` the Euclidean distance from ``x`` to its k-th nearest neighbour within its
own set (itself excluded) and ``B(x, r) = {y : ||y - x|| < r}``, over real features
``X_1..X_N`` and generated features ``Y_1..Y_M``:

    precision = 1/M sum_j 1[Y_j in U_i B(X_i, r_k(X_i))]                 (K&al. Eq. 1-3)
    recall    = 1/N sum_i 1[X_i in U_j B(Y_j, r_k(Y_j))]
    density   = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, r_k(X_i))]            (Naeem&al. Eq. 5)
    coverage  = 1/N sum_i 1[exists j: Y_j in B(X_i, r_k(X_i))]           (Naeem&al. Eq. 6)

Balls are open (a point exactly on a sphere is outside: ``<``, as the authors' ``prdc``
package). Distances are float64, from ``||x||² + ||y||² - 2 x·y`` (one matrix product per
row chunk of at most ``CHUNK_BYTES``, so memory stays bounded whatever the set sizes);
wherever that value is within rounding of a radius, the squared distance is recomputed
directly as ``sum((x - y)²)``, the one symmetric function the radii are taken from too, so
ties are decided consistently: a generated image identical to a real one is that real
point, not one on either side of a sphere by rounding (identical sets: density exactly 1).
Defaults are the papers': k = 3 for precision / recall, k = 5 for density / coverage; each
set needs k + 1 points.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from evalkit.errors import EvalkitError

K_PR = 3  # Kynkäänniemi et al. 2019, Sec. 3
K_DC = 5  # Naeem et al. 2020, Sec. 4 ("k = 5")
CHUNK_BYTES = 64 * 2 ** 20  # at most this much of the distance matrix (or of exact differences) at a time
_TOL = 1e-10  # |matrix-product d² - threshold| below _TOL (||x||² + ||y||²): recomputed exactly


def _check(real, fake, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    from evalkit.metrics.registry import check_features

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EvalkitError(f"{metric}: k must be an integer >= 1, got {k!r}")
    r = check_features(real, "real", metric, min_n=int(k) + 1)
    f = check_features(fake, "generated", metric, min_n=int(k) + 1)
    if r.shape[1] != f.shape[1]:
        raise EvalkitError(f"{metric}: feature sizes differ: {r.shape[1]} (real) vs {f.shape[1]} (generated)")
    return torch.from_numpy(r), torch.from_numpy(f)


def _exact_sq(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``sum((a[rows] - b[cols])²)`` per pair, in batches of at most CHUNK_BYTES."""
    out = torch.empty(len(rows), dtype=torch.float64)
    step = max(1, CHUNK_BYTES // (8 * a.shape[1]))
    for s in range(0, len(rows), step):
        out[s:s + step] = ((a[rows[s:s + step]] - b[cols[s:s + step]]) ** 2).sum(dim=1)
    return out


def _sq_chunks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, d², tol)`` for row chunks of ``a`` against all of ``b``: squared distances
    from the matrix product and how far from exact they may be."""
    sa, sb = (a * a).sum(dim=1), (b * b).sum(dim=1)
    rows = max(1, CHUNK_BYTES // (8 * max(len(b), 1)))
    for start in range(0, len(a), rows):
        ca, na = a[start:start + rows], sa[start:start + rows, None]
        d2 = (na + sb[None, :] - 2 * (ca @ b.T)).clamp_min_(0)
        yield start, d2, _TOL * (na + sb[None, :])


def _inside(a, b, start: int, d2, tol, threshold) -> torch.Tensor:
    """``d²(a[start + i], b[j]) < threshold[i, j]``, exact wherever ``d2`` is within ``tol``."""
    threshold = threshold.expand_as(d2)
    inside = d2 < threshold - tol
    near = (d2 - threshold).abs() <= tol
    if near.any():
        i, j = near.nonzero(as_tuple=True)
        inside[i, j] = _exact_sq(a, b, i + start, j) < threshold[i, j]
    return inside


def _knn_radii_sq(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exact squared distance of every row of ``x`` to its k-th nearest other row."""
    out = torch.empty(len(x), dtype=torch.float64)
    for start, d2, tol in _sq_chunks(x, x):
        idx = torch.arange(len(d2))
        d2[idx, idx + start] = 0.0  # itself (the k + 1 smallest include it)
        kth = torch.topk(d2, k + 1, dim=1, largest=False).values[:, -1:]
        i, j = (d2 <= kth + 2 * tol.max(dim=1, keepdim=True).values).nonzero(as_tuple=True)  # holds the exact k + 1
        exact = torch.full_like(d2, float("inf"))
        exact[i, j] = _exact_sq(x, x, i + start, j)
        exact[idx, idx + start] = 0.0
        out[start:start + len(d2)] = torch.topk(exact, k + 1, dim=1, largest=False).values[:, -1]
    return out


def knn_radii(feats, k: int) -> np.ndarray:
    """``r_k(x)`` for every row of ``feats`` [N, D]: the distance to its k-th nearest other row."""
    x = feats if isinstance(feats, torch.Tensor) else torch.from_numpy(np.asarray(feats, dtype=np.float64))
    return _knn_radii_sq(x.double(), k).sqrt().numpy()


def precision_recall(real, fake, k: int = K_PR) -> dict[str, float]:
    """``{"precision", "recall"}`` of generated features ``fake`` [M, D] against real
    features ``real`` [N, D] with k-NN radii (Kynkäänniemi et al. 2019); see the module docstring."""
    r, f = _check(real, fake, k, "precision/recall")
    r2_real, r2_fake = _knn_radii_sq(r, k), _knn_radii_sq(f, k)
    in_real = torch.zeros(len(f), dtype=torch.bool)  # Y_j inside the real manifold
    in_fake = torch.zeros(len(r), dtype=torch.bool)  # X_i inside the generated manifold
    for start, d2, tol in _sq_chunks(f, r):  # d2[j, i] = ||Y_j - X_i||²
        stop = start + len(d2)
        in_real[start:stop] = _inside(f, r, start, d2, tol, r2_real[None, :]).any(dim=1)
        in_fake |= _inside(f, r, start, d2, tol, r2_fake[start:stop, None]).any(dim=0)
    return {"precision": float(in_real.double().mean()), "recall": float(in_fake.double().mean())}


def density_coverage(real, fake, k: int = K_DC) -> dict[str, float]:
    """``{"density", "coverage"}`` of generated features ``fake`` [M, D] against real
    features ``real`` [N, D] (Naeem et al. 2020, Eq. 5-6); see the module docstring."""
    r, f = _check(real, fake, k, "density/coverage")
    r2_real = _knn_radii_sq(r, k)
    inside = 0
    covered = torch.zeros(len(r), dtype=torch.bool)  # X_i's ball holds some Y_j
    for start, d2, tol in _sq_chunks(f, r):
        balls = _inside(f, r, start, d2, tol, r2_real[None, :])
        inside += int(balls.sum())
        covered |= balls.any(dim=0)
    return {"density": inside / (k * len(f)), "coverage": float(covered.double().mean())}


# -- the ``prdc`` family (evalkit.metrics.registry) -----------------------------------------
def _prdc_compute(ctx) -> list[dict]:
    from evalkit.metrics.fid import inception_features

    fa, fb = inception_features(ctx)
    net, mode = ctx.backbones["inception"], ctx.options.fid_mode
    p = ctx.protocol(net, resolution=net.resolution)
    rows = []
    for values, k in ((precision_recall(fb, fa, k=K_PR), K_PR), (density_coverage(fb, fa, k=K_DC), K_DC)):
        rows += [ctx.row(name, f"{mode}-k{k}", value, ctx.n, p) for name, value in values.items()]
    return rows


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_metric

    # No per-item values: recall and coverage are means over the *real* set and every
    # k-NN radius depends on the whole set (a bootstrap resample's duplicates have radius 0).
    register_metric(MetricSpec("prdc", rows=tuple(RowSpec(name, higher_is_better=True, decimals=3)
                                                  for name in ("precision", "recall", "density", "coverage")),
                               compute=_prdc_compute, needs=("sets",), backbone="inception", shards=True, order=25,
                               min_images=max(K_PR, K_DC) + 1, from_stats=True))


_register()
