"""Metrics as pure functions over uint8 images or feature arrays, and the one-pass
evaluation of a whole image set (:func:`evaluate_folders`, :func:`evaluate_arrays`).
Definitions and protocol fields: README.md (Metrics and evaluation protocol)."""

from evalkit.metrics.evaluate import METRICS, evaluate_arrays, evaluate_folders
from evalkit.metrics.fid import fid_from_features, frechet_distance
from evalkit.metrics.kid import kid_from_features
from evalkit.metrics.lpips import LPIPSAlex, lpips_distance, lpips_diversity
from evalkit.metrics.pixel import psnr, ssim
from evalkit.metrics.swd import sliced_wasserstein
from evalkit.metrics.vgg import vgg_consistency

__all__ = [
    "METRICS", "evaluate_arrays", "evaluate_folders", "frechet_distance", "fid_from_features", "kid_from_features",
    "sliced_wasserstein", "LPIPSAlex", "lpips_distance", "lpips_diversity", "vgg_consistency", "psnr", "ssim",
]
