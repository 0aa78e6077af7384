"""Metrics as pure functions over uint8 images or feature arrays, the metric registry
(:mod:`evalkit.metrics.registry`: every family declared once) and the one-pass evaluation
of a whole image set (:func:`evaluate_folders`, :func:`evaluate_arrays`).
Definitions and protocol fields: README.md (Metrics and evaluation protocol)."""

from evalkit.metrics.evaluate import evaluate_arrays, evaluate_folders
from evalkit.metrics.fid import fid_from_features, frechet_distance
from evalkit.metrics.kid import kid_from_features
from evalkit.metrics.lpips import LPIPSAlex, lpips_distance, lpips_diversity
from evalkit.metrics.options import EvaluationOptions
from evalkit.metrics.pixel import psnr, ssim
from evalkit.metrics.prdc import density_coverage, precision_recall
from evalkit.metrics.swd import sliced_wasserstein
from evalkit.metrics.vgg import vgg_consistency

__all__ = [
    "METRICS", "EvaluationOptions", "evaluate_arrays", "evaluate_folders", "frechet_distance", "fid_from_features",
    "kid_from_features", "sliced_wasserstein", "LPIPSAlex", "lpips_distance", "lpips_diversity", "vgg_consistency",
    "psnr", "ssim", "precision_recall", "density_coverage",
]


def __getattr__(name):
    if name == "METRICS":  # the registered families, read at access time (the registry may grow)
        from evalkit.metrics.registry import families

        return families()
    raise AttributeError(f"module 'evalkit.metrics' has no attribute {name!r}")
