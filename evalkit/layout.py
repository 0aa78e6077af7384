"""The outputs layout: where one inference writes, and what evaluate, reports and studies read.

::

    OUT/inputs/real/<name>.png        the ground truth of each test sample
    OUT/inputs/exemplar/<name>.png    the exemplar it was translated with
    OUT/inputs/cond/<name>.png        the conditional input, visualised
    OUT/inputs/pairs.csv              name, query, exemplar_name (one row a sample)
    OUT/<variant_dir>/images/<name>.<png|jpg>   the variant's outputs
    OUT/<variant_dir>/warped/<name>.png         its warped exemplars (when it has them)
    OUT/<variant_dir>/meta.json                 variant, image format, n_images, build args, ...

``<variant_dir>`` is the variant name with ``/`` replaced by ``__`` (:func:`variant_dir`):
``unite/seace+uot`` → ``unite__seace+uot``. Temp files (dotfiles) are never part of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.files import is_image_file, is_temp_file

INPUT_KINDS = ("real", "exemplar", "cond")
PAIRS_COLUMNS = ("name", "query", "exemplar_name")


def variant_dir(variant: str) -> str:
    """Folder name of a variant in the outputs layout (``/`` → ``__``)."""
    return variant.replace("/", "__")


def variant_from_dir(name: str) -> str:
    """Inverse of :func:`variant_dir`."""
    return name.replace("__", "/")


@dataclass(frozen=True)
class OutputsLayout:
    """One outputs folder (``root``) in the layout of the module docstring."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # inputs ----------------------------------------------------------------------------
    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    def input_dir(self, kind: str) -> Path:
        if kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {kind!r}; one of {INPUT_KINDS}")
        return self.inputs / kind

    @property
    def real(self) -> Path:
        return self.input_dir("real")

    @property
    def exemplar(self) -> Path:
        return self.input_dir("exemplar")

    @property
    def cond(self) -> Path:
        return self.input_dir("cond")

    @property
    def pairs(self) -> Path:
        return self.inputs / "pairs.csv"

    def input_image(self, kind: str, name: str) -> Path:
        return self.input_dir(kind) / f"{name}.png"

    # variants --------------------------------------------------------------------------
    def variant(self, variant: str) -> Path:
        return self.root / variant_dir(variant)

    def images(self, variant: str) -> Path:
        return self.variant(variant) / "images"

    def warped(self, variant: str) -> Path:
        return self.variant(variant) / "warped"

    def meta_path(self, variant: str) -> Path:
        return self.variant(variant) / "meta.json"

    def output_image(self, variant: str, name: str, ext: str = "png") -> Path:
        return self.images(variant) / f"{name}.{ext}"

    def warped_image(self, variant: str, name: str) -> Path:
        return self.warped(variant) / f"{name}.png"

    def read_meta(self, variant: str) -> dict:
        path = self.meta_path(variant)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvalkitError(f"{path}: not found; this is not an outputs folder of {variant!r}", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EvalkitError(f"{path}: not valid meta.json ({err})", path=path) from err

    def variant_dirs(self) -> list[Path]:
        """Every variant folder (one with an ``images/`` sub-folder), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.is_dir() and p.name != "inputs" and not is_temp_file(p) and (p / "images").is_dir())

    def variants(self) -> list[str]:
        """Variant names found in the folder (``meta.json``'s ``variant``, else the folder name)."""
        out = []
        for d in self.variant_dirs():
            meta = d / "meta.json"
            name = None
            if meta.is_file():
                try:
                    name = json.loads(meta.read_text(encoding="utf-8")).get("variant")
                except (json.JSONDecodeError, UnicodeDecodeError):
                    name = None
            out.append(name or variant_from_dir(d.name))
        return out

    # contents --------------------------------------------------------------------------
    @staticmethod
    def image_files(folder: Path) -> list[Path]:
        """Image files of one layout folder, temp files excluded, sorted."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))

    def names(self, kind: str = "real") -> list[str]:
        """Sample names (file stems) of one inputs folder."""
        return [p.stem for p in self.image_files(self.input_dir(kind))]

    def is_layout(self) -> bool:
        return self.real.is_dir() and self.pairs.is_file()
