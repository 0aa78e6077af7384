"""PSNR and SSIM for manipulation tasks (RABIT Sec. 4.3) on uint8 RGB (``data_range=255``).
SSIM is scikit-image's (Wang et al. 2004, 7x7 uniform window, per channel then mean, its
defaults). PSNR is scikit-image's arithmetic, ``10 log10(255^2 / MSE)`` with the MSE in
float64, written here: ``skimage.metrics.peak_signal_noise_ratio`` lives in a module that
imports ``scipy.stats`` (1.7 s of every `evaluate`); the tests check it equals that function
bit for bit. Values are per image; tables report the mean."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from evalkit.errors import EvalkitError


def _pairs(a, b, batch: int = 32):
    """``(x, y)`` uint8 ``[H, W, 3]`` pairs of two equal-shape sets (``[N, 3, H, W]`` arrays or
    :class:`~evalkit.image_stack.ImageStack` s), decoded ``batch`` pairs at a time."""
    from evalkit.image_stack import as_stack

    a, b = as_stack(a, "PSNR/SSIM images_a"), as_stack(b, "PSNR/SSIM images_b")
    if len(a) != len(b) or not (a.one_size and b.one_size) or a.shape != b.shape:
        shape = [list(s.shape) if s.one_size else "mixed sizes" for s in (a, b)]
        raise EvalkitError(f"PSNR/SSIM need paired images of equal shape, got {shape[0]} and {shape[1]}")
    for start in range(0, len(a), batch):
        idx = range(start, min(len(a), start + batch))
        yield from zip(a.batch(idx).permute(0, 2, 3, 1).numpy(), b.batch(idx).permute(0, 2, 3, 1).numpy())


def psnr_uint8(image_true: np.ndarray, image_test: np.ndarray) -> float:
    """PSNR in dB of two uint8 images: ``skimage.metrics.peak_signal_noise_ratio(image_true,
    image_test, data_range=255)``'s arithmetic (inf for identical images)."""
    err = np.mean((image_true.astype(np.float64) - image_test.astype(np.float64)) ** 2, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(10 * np.log10(255.0 ** 2 / err))


def psnr(images_a, images_b) -> np.ndarray:
    """Per-image PSNR in dB (inf for identical images)."""
    return np.array([psnr_uint8(y, x) for x, y in _pairs(images_a, images_b)])


def ssim(images_a, images_b) -> np.ndarray:
    """Per-image SSIM over RGB channels."""
    return np.array([structural_similarity(x, y, data_range=255, channel_axis=2) for x, y in _pairs(images_a, images_b)])


# -- the ``psnr`` and ``ssim`` families (evalkit.metrics.registry) --------------------------
def _psnr_compute(ctx) -> list[dict]:
    return [ctx.row("PSNR", "skimage", np.mean(_psnr_items(ctx)), ctx.n, ctx.protocol())]


def _ssim_compute(ctx) -> list[dict]:
    return [ctx.row("SSIM", "skimage", np.mean(_ssim_items(ctx)), ctx.n, ctx.protocol())]


def _psnr_items(ctx) -> np.ndarray:
    return psnr(ctx.inputs.generated, ctx.inputs.paired_real)


def _ssim_items(ctx) -> np.ndarray:
    return ssim(ctx.inputs.generated, ctx.inputs.paired_real)


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, PerItem, RowSpec, register_metric

    register_metric(MetricSpec("psnr", rows=(RowSpec("PSNR", higher_is_better=True, decimals=2),),
                               compute=_psnr_compute, needs=("pairs",),
                               per_item=lambda ctx, row: PerItem(_psnr_items(ctx)), order=70))
    register_metric(MetricSpec("ssim", rows=(RowSpec("SSIM", higher_is_better=True, decimals=3),),
                               compute=_ssim_compute, needs=("pairs",),
                               per_item=lambda ctx, row: PerItem(_ssim_items(ctx)), order=80, min_size=7))


_register()
