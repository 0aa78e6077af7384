"""Fréchet Inception Distance (Heusel et al., NeurIPS 2017, Eq. 6).

    FID = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})

All in float64. ``tr((S_a S_b)^{1/2})`` is computed from eigenvalues, never with
``scipy.linalg.sqrtm`` (minutes per call at D = 2048, complex output in some SciPy
versions):

- from covariances: ``S_a^{1/2}`` by ``eigh``, then the eigenvalues of the symmetric PSD
  matrix ``S_a^{1/2} S_b S_a^{1/2}`` (same spectrum as ``S_a S_b``), clipped at 0;
- from features, when ``min(N_a, N_b) < D``: with centred data ``A``, ``B`` and
  ``S = A^T A / (N - 1)``, the non-zero eigenvalues of ``S_a S_b`` are the squared singular
  values of ``A B^T / sqrt((N_a - 1)(N_b - 1))``, so the trace term is the nuclear norm of
  that ``N_a x N_b`` matrix: exact, and cheap and real-valued when N < D.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from evalkit.errors import EvalkitError


def _f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """``tr((S1 S2)^{1/2})`` for symmetric PSD ``S1``, ``S2`` via eigenvalues."""
    r = _sqrt_psd(_f64(sigma1))
    m = r @ _f64(sigma2) @ r
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, *, names: tuple[str, str] = ("first", "second")) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2), float64.
    Non-finite means or covariances are refused (:func:`evalkit.metrics.registry.check_finite`)."""
    from evalkit.metrics.registry import check_finite

    mu1, mu2 = _f64(mu1).ravel(), _f64(mu2).ravel()
    sigma1, sigma2 = np.atleast_2d(_f64(sigma1)), np.atleast_2d(_f64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise EvalkitError(f"frechet_distance: shapes disagree (mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape})")
    for name, mu, sigma in ((names[0], mu1, sigma1), (names[1], mu2, sigma2)):
        check_finite(mu, f"{name} set mean", "FID")
        check_finite(sigma, f"{name} set covariance", "FID")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid_from_features(feats_a, feats_b, *, names: tuple[str, str] = ("feats_a", "feats_b")) -> float:
    """FID between two ``[N, D]`` feature sets (sample covariances, ``ddof=1``, as clean-fid).
    ``names`` name the sets in errors (:func:`evalkit.metrics.registry.check_features`)."""
    from evalkit.metrics.registry import check_features

    a = check_features(feats_a, names[0], "FID")
    b = check_features(feats_b, names[1], "FID")
    if a.shape[1] != b.shape[1]:
        raise EvalkitError(f"FID: feature sizes differ: {a.shape[1]} ({names[0]}) vs {b.shape[1]} ({names[1]})")
    mu_a, mu_b = a.mean(0), b.mean(0)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(mu_a, np.cov(a, rowvar=False), mu_b, np.cov(b, rowvar=False), names=names)
    ca, cb = a - mu_a, b - mu_b
    tr_a = (ca * ca).sum() / (len(a) - 1)
    tr_b = (cb * cb).sum() / (len(b) - 1)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = mu_a - mu_b
    return float(max(diff @ diff + tr_a + tr_b - 2 * cross, 0.0))


def fid_resampler(feats, reference) -> Callable[[np.ndarray], float]:
    """``f(idx)`` = ``fid_from_features(feats[idx], reference[idx])`` for the bootstrap's many
    resamples of one pair of ``[N, D]`` feature sets, from their ``N x N`` Gram blocks
    (``G = X Y^T``, computed once): with ``H`` the centring matrix of the ``m`` resampled rows,
    ``||mu_a - mu_r||^2 = 1^T (G_aa - 2 G_ar + G_rr) 1 / m^2``, ``tr S = (tr G - 1^T G 1 / m) / (m - 1)``
    and ``tr sqrt(S_a S_r)`` = the nuclear norm of ``H G_ar H / (m - 1)`` (the non-zero eigenvalues of
    ``S_a S_r`` are the squared singular values of ``C_a C_r^T / (m - 1)``), so a resample costs
    ``O(m^2 + m^3)`` instead of ``O(m D)`` plus checks."""
    a, r = _f64(feats), _f64(reference)
    g_aa, g_rr, g_ar = a @ a.T, r @ r.T, a @ r.T

    def fid(idx) -> float:
        idx = np.asarray(idx)
        m = len(idx)
        block = np.ix_(idx, idx)
        aa, rr, ar = g_aa[block], g_rr[block], g_ar[block]
        s_aa, s_rr, s_ar = aa.sum(), rr.sum(), ar.sum()
        diff = (s_aa - 2 * s_ar + s_rr) / m ** 2
        tr_a = (np.trace(aa) - s_aa / m) / (m - 1)
        tr_r = (np.trace(rr) - s_rr / m) / (m - 1)
        centred = ar - ar.mean(1, keepdims=True) - ar.mean(0, keepdims=True) + s_ar / m ** 2
        cross = np.linalg.svd(centred, compute_uv=False).sum() / (m - 1)
        return float(max(diff + tr_a + tr_r - 2 * cross, 0.0))

    return fid


fid_from_features.resampler = fid_resampler  # the bootstrap's fast path (evalkit.reports.bootstrap)


# -- the ``fid`` family (evalkit.metrics.registry) ------------------------------------------
def embed_images(images, keys: list[str], net, cache, advance=None) -> list[np.ndarray]:
    """Inception features of ``images`` (an :class:`~evalkit.image_stack.ImageStack`, or uint8
    ``[3, H, W]`` tensors; ``keys``: their content hashes) through the feature cache, batched by
    size: the one embedding pass of FID, KID, prdc and ``evalkit stats build``."""
    from evalkit.features import FeatureCache, cached_per_item
    from evalkit.image_stack import ImageStack

    images = ImageStack.of(images)
    ns = FeatureCache.namespace(**net.protocol_key())

    def compute(idx):
        by_size: dict[tuple, list[int]] = {}
        for i in idx:
            by_size.setdefault(images.shapes[i], []).append(i)
        out = {}
        for group in by_size.values():
            out.update(zip(group, net(images.batch(group)).numpy()))
        return [out[i] for i in idx]

    return cached_per_item(cache, ns, keys, compute, batch_size=16, advance=advance)


def inception_features(ctx) -> tuple[np.ndarray, np.ndarray]:
    """Inception pool features of the generated and real sets, through the feature cache,
    once per evaluation (shared by the ``fid``, ``kid`` and ``prdc`` families). With
    reference statistics (``evaluate --real-stats``) the real set's are the stored ones."""
    from evalkit.image_stack import ImageStack

    if "inception" in ctx.memo:
        return ctx.memo["inception"]
    inp, n = ctx.inputs, ctx.n
    reference = getattr(inp, "reference", None)
    images = inp.generated if reference is not None else ImageStack.concat(inp.generated, inp.real)
    feats = embed_images(images, images.hashes, ctx.backbones["inception"], ctx.cache,
                         advance=ctx.bars.task("Inception features", len(images)))
    real = reference.features if reference is not None else np.stack(feats[n:])
    ctx.memo["inception"] = (np.stack(feats[:n]), real)
    return ctx.memo["inception"]


def _fid_compute(ctx) -> list[dict]:
    fa, fb = inception_features(ctx)
    net = ctx.backbones["inception"]
    return [ctx.row("FID", ctx.options.fid_mode, fid_from_features(fa, fb, names=("generated", "real")), ctx.n,
                    ctx.protocol(net, resolution=net.resolution))]


def _fid_per_item(ctx, row: str):
    from evalkit.metrics.registry import PerItem

    fa, fb = inception_features(ctx)
    return PerItem(fa, reference=fb, statistic=fid_from_features)


def _build_inception(options, device):
    from evalkit.features import InceptionFID

    return InceptionFID(options.fid_mode, options.weights, options.seed, device=device,
                        weights_files=getattr(options, "weights_files", None))


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_backbone, register_metric

    register_backbone("inception", _build_inception)
    register_metric(MetricSpec("fid", rows=(RowSpec("FID", higher_is_better=False, decimals=2),), compute=_fid_compute,
                               needs=("sets",), backbone="inception", per_item=_fid_per_item, shards=True, order=10,
                               from_stats=True))


_register()
