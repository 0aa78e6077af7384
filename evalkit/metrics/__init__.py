"""Metrics as pure functions over uint8 images or feature arrays, the metric registry
(:mod:`evalkit.metrics.registry`: every family declared once) and the one-pass evaluation
of a whole image set (:func:`evaluate_folders`, :func:`evaluate_arrays`).
Definitions and protocol fields: README.md (Metrics and evaluation protocol)."""

# imported on first access (PEP 562): `evalkit.metrics.options`, which every config and CLI
# command reads, must not pull in torchvision and scipy (about 4 s of `evalkit --help`)
_HOME = {
    "evaluate_arrays": "evaluate", "evaluate_folders": "evaluate", "fid_from_features": "fid",
    "frechet_distance": "fid", "kid_from_features": "kid", "LPIPSAlex": "lpips", "lpips_distance": "lpips",
    "lpips_diversity": "lpips", "EvaluationOptions": "options", "psnr": "pixel", "ssim": "pixel",
    "precision_recall": "prdc", "density_coverage": "prdc", "sliced_wasserstein": "swd",
    "vgg_consistency": "vgg",
}

__all__ = ["METRICS", *_HOME]


def __getattr__(name):
    if name == "METRICS":  # the registered families, read at access time (the registry may grow)
        from evalkit.metrics.registry import families

        return families()
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"evalkit.metrics.{_HOME[name]}"), name)
    raise AttributeError(f"module 'evalkit.metrics' has no attribute {name!r}")
