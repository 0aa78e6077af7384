"""Reference outputs: fixed transforms of the test sample that anchor a leaderboard.

No parameters, no training (registered with ``trainable=False``); reports show them in
italics and never rank them. ``reference/ground-truth`` is the best any method can do;
the others are known failure modes:

| variant | output |
| --- | --- |
| ``reference/ground-truth`` | the ground truth itself |
| ``reference/blur`` | the ground truth under a Gaussian blur, sigma = side / 32, kernel 2 * int(3 sigma) + 1 (reflect padding) |
| ``reference/colour-shift`` | the ground truth with its channels rotated by one, (R, G, B) ← (B, R, G): same layout, wrong colours |
| ``reference/exemplar-copy`` | the exemplar, unchanged: style without the layout |
"""

from __future__ import annotations

import torchvision.transforms.functional as TF

from evalkit.methods.translator import TranslationOutput, Translator

__all__ = ["ReferenceTranslator", "REFERENCES"]


def _blur(batch):
    gt = batch.image
    sigma = gt.shape[-1] / 32
    return TF.gaussian_blur(gt, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)


REFERENCES = {
    "reference/ground-truth": (lambda batch: batch.image, "the ground truth: the best any method can do"),
    "reference/blur": (_blur, "the ground truth blurred (Gaussian, sigma = side / 32): right layout, no detail"),
    "reference/colour-shift": (lambda batch: batch.image.roll(1, dims=1),
                               "the ground truth with its RGB channels rotated: right layout, wrong colours"),
    "reference/exemplar-copy": (lambda batch: batch.exemplar, "the exemplar copied: right style, wrong layout"),
}


class ReferenceTranslator(Translator):
    """One reference output of :data:`REFERENCES` (no parameters, not trainable)."""

    trainable = False

    def __init__(self, variant: str):
        super().__init__()
        self.variant = variant
        self._transform = REFERENCES[variant][0]

    def translate(self, batch) -> TranslationOutput:
        return TranslationOutput(image=self._transform(batch).clone())


def build_reference(config, cond_channels: int, variant: str) -> ReferenceTranslator:
    """Registry builder (no config: references take no overrides)."""
    return ReferenceTranslator(variant)


def _register() -> None:
    from evalkit.methods.registry import register_variant

    for name, (_, description) in REFERENCES.items():
        register_variant(name, build_reference, trainable=False, description=f"reference output: {description}")


_register()
