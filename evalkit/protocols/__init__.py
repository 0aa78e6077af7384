"""As-published evaluation protocols: ``evalkit evaluate --protocol NAME`` (and
``protocol = "NAME"`` in a run config's ``[evaluation]``), listed by ``evalkit protocols``.

The presets and their citations live in :mod:`evalkit.protocols.presets`; the JPEG codec
the official test scripts applied in :mod:`evalkit.protocols.codec`; UNITE's consistency
scripts in :mod:`evalkit.protocols.unite`. This module is the glue the evaluation calls:

- :func:`resolve` -- the evaluation options with the preset's pins applied (FID mode),
  or the conflicts between them (an explicit option the preset pins otherwise);
- :func:`real_size` -- the size and filter real images and exemplars are resized with;
- :func:`encode` -- an image set through the codec the preset says it went through;
- :func:`unavailable` -- why a metric family is not part of a preset (or cannot be computed
  under it), for the skip notes and the refusals;
- :func:`load_labels` -- label maps for UNITE's region-weighted semantic consistency.

``clean`` is evalkit's own protocol: it pins nothing, so ``--protocol clean`` is exactly
the evaluation without ``--protocol``. Every number carries its preset name in the
Protocol's ``protocol`` field; ``report compare`` never compares numbers of two presets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.errors import EvalkitError
from evalkit.protocols.codec import Codec
from evalkit.protocols.presets import DEFAULT, PRESETS, Pin, Preset, Source, get, names

__all__ = ["Codec", "DEFAULT", "PRESETS", "Pin", "Preset", "Source", "get", "names", "resolve", "problems",
           "real_size", "encode", "unavailable", "load_labels", "format_tag"]


def problems(options) -> list[str]:
    """One line per option that contradicts ``options.protocol`` (``field: why``)."""
    if options.protocol not in PRESETS:
        return [f"protocol: unknown protocol {options.protocol!r} (choose from: {', '.join(PRESETS)}; "
                "`evalkit protocols` lists them)"]
    p = PRESETS[options.protocol]
    out = []
    if p.fid_mode is not None and options.fid_mode not in (p.fid_mode, "clean"):
        out.append(f"fid_mode: protocol {p.name} pins {p.fid_mode!r}, got {options.fid_mode!r}")
    if not p.is_clean and options.swd_shared_patches:
        out.append(f"swd_shared_patches: protocol {p.name} pins the PGGAN draws (independent patches per set); "
                   "drop --swd-shared-patches or use --protocol clean")
    return out


def resolve(options):
    """``options`` with the preset's pins applied: its FID implementation replaces the
    default mode (a different explicit mode is a :func:`problems` line)."""
    p = get(options.protocol)
    if p.fid_mode is not None and options.fid_mode != p.fid_mode:
        return options.replace(fid_mode=p.fid_mode)
    return options


def real_size(protocol: str, requested: int | None, filter: str, generated_side: int | None) -> tuple[int | None, str]:
    """``(size, filter)`` real images and exemplars are resized with under ``protocol``:
    the preset's (the generated images' side, its filter) when it pins one, else the request.
    An explicit ``--real-size`` / ``--real-filter`` the preset contradicts is an error."""
    p = get(protocol)
    if p.real_resize is None:
        return requested, filter
    if generated_side is None:
        raise EvalkitError(f"protocol {p.name} resizes the real images to the generated images' size, and the "
                           "generated images are not all square of one size; evaluate one size, or --protocol clean")
    if requested is not None and requested != generated_side:
        raise EvalkitError(f"--real-size {requested}: protocol {p.name} resizes real images to the generated size "
                           f"({generated_side}); drop --real-size or use --protocol clean")
    if filter != p.real_filter and filter != "bicubic":
        raise EvalkitError(f"--real-filter {filter}: protocol {p.name} pins {p.real_filter}; drop --real-filter or "
                           "use --protocol clean")
    return generated_side, p.real_filter


def _codec(p: Preset, kind: str) -> Codec | None:
    return {"generated": p.generated_codec, "real": p.real_codec, "exemplar": p.exemplar_codec}[kind]


def encode(protocol: str, kind: str, images: list[np.ndarray], files=None, *, changed=None) -> list[np.ndarray]:
    """``images`` (uint8 ``[H, W, 3]``) of set ``kind`` (``generated``, ``real``, ``exemplar``)
    through the codec the preset says that set went through (unchanged without one). A file
    the codec already wrote, and not ``changed`` (resized) since, is kept as read. A JPEG
    *generated* file written at another quality is refused: it cannot be the official output."""
    from evalkit.protocols import codec as C

    p = get(protocol)
    c = _codec(p, kind)
    if c is None:
        return images
    if kind == "generated" and files is not None:
        for f in files:
            if Path(f).suffix.lower() in (".jpg", ".jpeg") and not c.wrote(f):
                raise EvalkitError(f"{f}: a JPEG not written at the quality protocol {p.name} pins ({c.tag}, "
                                   "Pillow's default, as the official test script saved it); pass the lossless "
                                   "(PNG) outputs, which evalkit encodes in memory, or use --protocol clean", path=f)
    return C.apply(c, images, files, changed=changed)


def format_tag(protocol: str, kind: str, fmt: str) -> str:
    """The Protocol's ``image_format`` of a set read as ``fmt`` under ``protocol``: ``png+jpeg-q75``
    when the preset's codec was simulated on it."""
    c = _codec(get(protocol), kind)
    return fmt if c is None else f"{fmt}+{c.tag}"


def unavailable(protocol: str, family: str, inp) -> str | None:
    """Why ``family`` is not computed under ``protocol`` on ``inp`` (``_Inputs``), or None."""
    p = get(protocol)
    if not p.defines(family):
        return (f"not part of protocol {p.name} (it defines {', '.join(p.families)}; "
                "`evalkit protocols` says why); use --protocol clean for it")
    if family == "swd" and p.swd_levels is not None:
        side = min(inp.generated.shape[2:]) if hasattr(inp.generated, "shape") else None
        need = 7 * 2 ** (p.swd_levels - 1)  # the coarsest level must hold a 7x7 neighbourhood
        if side is not None and side < need:
            return (f"protocol {p.name} computes {p.swd_levels} pyramid levels (the script's fixed 256 x 256 shape), "
                    f"which needs images of at least {need} px, got {side} px")
    if family == "vgg" and p.consistency == "unite2021":
        semantic = inp.pairs is not None and getattr(inp, "labels", None) is not None
        if not semantic and inp.exemplars is None:
            return ("protocol unite2021: semantic consistency needs paired real images and their label maps "
                    "(--labels; the script weights cosines by label regions), style consistency needs --exemplars")
    return None


def load_labels(spec, names: list[str], size: tuple[int, int], *, recursive: bool = False) -> list[np.ndarray]:
    """The label map of every generated image (``names``, matched by name) from ``spec`` (a
    folder, a quoted glob such as ``"validation/*.png"``, ...), as integer ``[H, W]`` arrays,
    nearest-resized to ``size`` (H, W) as the official loaders resize labels. Files that are
    not single-channel (an RGB picture) are refused."""
    from PIL import Image

    from evalkit.files import _open_checked
    from evalkit.images import resolve_images

    found = resolve_images(spec, recursive=recursive)
    by_name = dict(zip(found.names, found.files))
    out = []
    for name in names:
        if name not in by_name:
            raise EvalkitError(f"{spec}: no label map for sample '{name}'; add it or fix --labels")
        path = by_name[name]
        with _open_checked(path, "label map") as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise EvalkitError(f"{path}: a {im.mode} image, not a label map (single channel); select the "
                                   f"label maps, e.g. with a quoted glob \"{Path(path).parent / '*.png'}\"", path=path)
            if (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.NEAREST)
            out.append(np.asarray(im, dtype=np.int64).copy())
    return out
