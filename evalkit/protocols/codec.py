"""The codec the official test scripts put generated images through, simulated in memory.

CoCosNet, UNITE and RABIT saved every output with ``torchvision.utils.save_image`` under a
``.jpg`` name (microsoft/CoCosNet ``test.py:46-48``, fnzhan/UNITE ``test.py:62-63``,
fnzhan/RABIT ``test.py:61-63``). ``save_image`` quantises (``x * 255 + 0.5``, clamped) and
calls ``PIL.Image.save(fp)`` without options, so the format comes from the name and every
JPEG setting is Pillow's default: quality 75, 4:2:0 chroma subsampling, baseline, no
optimisation. :func:`roundtrip` does exactly that into a byte buffer and decodes it back the
way every metric reads a file (:func:`evalkit.files.load_image`), so a PNG output evaluated
under a paper preset gives the pixels the paper's ``.jpg`` file would have held.

A file that already went through this codec (its quantisation tables and subsampling are
the ones Pillow writes at that quality) is taken as it is: re-encoding a decoded JPEG is not
the identity, and the released ``.jpg`` outputs must not be compressed twice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

PIL_DEFAULT_QUALITY = 75  # libjpeg's jpeg_set_defaults, what Image.save uses without quality=


@dataclass(frozen=True)
class Codec:
    """A lossy codec images went through: ``format`` (``jpeg``) at ``quality``.

    ``pil_default``: written without any option (``Image.save(fp)`` of ``save_image``),
    i.e. Pillow's defaults; otherwise ``quality=`` is passed explicitly."""

    format: str = "jpeg"
    quality: int = PIL_DEFAULT_QUALITY
    pil_default: bool = True

    @property
    def tag(self) -> str:
        """How the Protocol's ``image_format`` records it (``png+jpeg-q75``)."""
        return f"{self.format}-q{self.quality}"

    def encode(self, image_hwc: np.ndarray) -> bytes:
        """The file bytes ``save_image`` would write for this uint8 ``[H, W, 3]`` image."""
        buf = io.BytesIO()
        im = Image.fromarray(np.ascontiguousarray(image_hwc, dtype=np.uint8))
        if self.pil_default:
            im.save(buf, format="JPEG")
        else:
            im.save(buf, format="JPEG", quality=self.quality)
        return buf.getvalue()

    def roundtrip(self, image_hwc: np.ndarray) -> np.ndarray:
        """``image_hwc`` encoded and decoded again (RGB uint8, as :func:`evalkit.files.load_image`)."""
        with Image.open(io.BytesIO(self.encode(image_hwc))) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()

    def wrote(self, path: str | Path) -> bool:
        """True when ``path`` is a JPEG this codec could have written (same quantisation
        tables and chroma subsampling): its pixels already are the codec's output."""
        try:
            with Image.open(path) as im:
                if im.format != "JPEG":
                    return False
                from PIL import JpegImagePlugin

                return (_tables(im.quantization) == _reference(self)[0]
                        and JpegImagePlugin.get_sampling(im) == _reference(self)[1])
        except (OSError, ValueError):
            return False


def _tables(q: dict) -> tuple:
    return tuple((k, tuple(v)) for k, v in sorted(q.items()))


@lru_cache(maxsize=None)
def _reference(codec: Codec) -> tuple[tuple, int]:
    """Quantisation tables and subsampling of a JPEG this codec writes (colour image)."""
    from PIL import JpegImagePlugin

    rng = np.random.RandomState(0)
    with Image.open(io.BytesIO(codec.encode(rng.randint(0, 256, (16, 16, 3)).astype(np.uint8)))) as im:
        return _tables(im.quantization), JpegImagePlugin.get_sampling(im)


def apply(codec: Codec | None, images: list[np.ndarray], files=None, *, changed=None) -> list[np.ndarray]:
    """``images`` through ``codec`` (None: unchanged). ``files[i]``: where ``images[i]`` was
    read (an image already written by the codec and not ``changed[i]`` -- e.g. resized -- is
    kept as it is)."""
    if codec is None:
        return images
    out = []
    for i, im in enumerate(images):
        kept = files is not None and not (changed is not None and changed[i]) and codec.wrote(files[i])
        out.append(im if kept else codec.roundtrip(im))
    return out
