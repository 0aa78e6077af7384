"""Protocol: the evaluation settings recorded with every number evalkit produces.

Two numbers are comparable only if their protocols agree on the fields that matter for
that metric (``Protocol.differences``). Random-initialised backbones are recorded as
``random-init(seed=S)`` and are never comparable with published numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from dataclasses import dataclass, field

from evalkit import __version__

TRACKED_LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "pillow", "clean-fid", "lpips", "pot")
NOT_COMPARABLE_NOTE = "not comparable with published numbers (random-initialised backbone)"


@functools.cache
def library_versions(names: tuple[str, ...] = TRACKED_LIBRARIES) -> tuple[tuple[str, str], ...]:
    """Installed versions of the libraries that can change a metric value (read once per
    process: a metadata lookup is ~15 ms, and every row of every metric records them)."""
    out = []
    for name in names:
        try:
            out.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append((name, "absent"))
    return tuple(out)


def random_init_tag(seed: int) -> str:
    return f"random-init(seed={seed})"


@dataclass(frozen=True)
class Protocol:
    """How one metric value was computed.

    resolution: side length images are resized to before the backbone (e.g. 299 for FID).
    resize: named resize function, e.g. ``clean-pil-bicubic`` (clean-fid) or
        ``legacy-bilinear`` (pytorch-fid, inside the model); ``none`` when not resized.
    image_format: file format the generated images were read from (``png``, ``jpeg``, ...).
    backbone: feature network (``inception-v3-cleanfid``, ``vgg19``, ``alexnet-lpips``, ``none``).
    weights_sha256: sha256 of the weights file, or ``random-init(seed=S)``.
    n_images: number of images that entered the metric.
    metric_seed: the seed of the metric's own randomness (KID subsets, SWD patches and
        directions, random-initialised backbones).
    real_resize: how real images and exemplars were resized before evaluation
        (``pil-bicubic-256`` for ``--real-size 256``, the papers' protocol), or ``none``.
    protocol: the evaluation preset the number was computed under (:mod:`evalkit.protocols`):
        ``clean`` (evalkit's own) or an as-published one (``cocosnet2020``, ``unite2021``,
        ``rabit2022``). Numbers of two presets are never compared.
    """

    resolution: int
    resize: str
    image_format: str
    backbone: str
    weights_sha256: str
    n_images: int
    metric_seed: int = 0
    real_resize: str = "none"
    protocol: str = "clean"
    library_versions: tuple[tuple[str, str], ...] = field(default_factory=library_versions)
    evalkit_version: str = __version__

    @property
    def random_weights(self) -> bool:
        return self.weights_sha256.startswith("random-init")

    @property
    def comparable(self) -> bool:
        """True when the numbers may be compared with published (pretrained) ones."""
        return not self.random_weights

    def differences(self, other: "Protocol", fields: tuple[str, ...] = ("resolution", "resize", "real_resize", "image_format", "backbone",
                                                              "weights_sha256", "protocol")) -> list[str]:
        """Names of the fields (among ``fields``) on which two protocols disagree."""
        return [f for f in fields if getattr(self, f) != getattr(other, f)]

    def as_columns(self) -> dict:
        """Flat columns for the long results table."""
        d = dataclasses.asdict(self)
        d["library_versions"] = ";".join(f"{k}={v}" for k, v in self.library_versions)
        d["comparable"] = self.comparable
        return d
