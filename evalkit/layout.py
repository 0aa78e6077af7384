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

import csv
import filecmp
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.files import is_image_file, is_temp_file, replace_dir, staging_dir

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


def read_pairs_csv(path: str | Path) -> list[dict]:
    """Rows of an ``inputs/pairs.csv`` (``name,query,exemplar_name``), validated: UTF-8 (a
    byte-order mark is fine), the three columns in the header, three non-empty fields on
    every row, each sample named once (a repeated row would be counted as a pair of a
    sample with itself by LPIPS diversity). Every problem is one :class:`EvalkitError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"{path}: pairs file not found; pass inputs/pairs.csv of the outputs layout", path=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, r) for r in reader]
            header = reader.fieldnames or []
    except UnicodeDecodeError as err:
        raise EvalkitError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start}); "
                           "pass inputs/pairs.csv of the outputs layout", path=path) from err
    except csv.Error as err:
        raise EvalkitError(f"{path}: not a valid CSV ({err}); pass inputs/pairs.csv of the outputs layout",
                           path=path) from err
    if not set(PAIRS_COLUMNS) <= {h.strip() for h in header}:
        raise EvalkitError(f"{path}: expected a CSV with columns {','.join(PAIRS_COLUMNS)}, got header "
                           f"{','.join(header) or '(empty file)'}", path=path)
    if not rows:
        raise EvalkitError(f"{path}: no rows below the header; pass inputs/pairs.csv of the outputs layout", path=path)
    seen: dict[str, int] = {}
    out = []
    for line, r in rows:
        r = {(k or "").strip(): v for k, v in r.items()}
        if None in r.values() or "" in r or any(not (r.get(c) or "").strip() for c in PAIRS_COLUMNS):
            raise EvalkitError(f"{path}:{line}: expected {len(header)} non-empty fields "
                               f"({','.join(header)}); fix or remove the row", path=path)
        name = r["name"].strip()
        if name in seen:
            raise EvalkitError(f"{path}:{line}: sample {name!r} is listed twice (first on line {seen[name]}); "
                               "each sample has one row", path=path)
        seen[name] = line
        out.append({k: v.strip() for k, v in r.items()})
    return out


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not is_temp_file(p))


def same_files(a: Path, b: Path) -> bool:
    """True when folders ``a`` and ``b`` hold the same files with the same bytes (temp files aside)."""
    if not (a.is_dir() and b.is_dir()):
        return False
    names = _tree(a)
    return names == _tree(b) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def install_outputs(staged: str | Path, out_dir: str | Path, variant: str) -> Path:
    """Move a complete outputs layout written at ``staged`` (``inputs/`` + one variant) into
    ``out_dir``; returns the variant folder there.

    A new ``out_dir`` is the staged folder renamed whole. In an existing one the variant
    folder is replaced whole; ``inputs/`` is kept when byte-identical (another variant of
    the same samples), else replaced, which is refused when other variants of the old
    inputs are there (they would no longer match their ground truth). The old variant is
    removed before new inputs go in, so a kill at any point leaves either the old layout,
    or a layout without that variant (and a temp folder to sweep), never stale outputs
    beside new inputs.
    """
    staged, out_dir = OutputsLayout(staged), OutputsLayout(out_dir)
    if not out_dir.root.exists():
        replace_dir(staged.root, out_dir.root)
        return out_dir.variant(variant)
    if not out_dir.root.is_dir():
        raise EvalkitError(f"{out_dir.root} is a file; give a folder for the outputs", path=out_dir.root)
    if not same_files(staged.inputs, out_dir.inputs):
        mine = variant_dir(variant)
        others = [d.name for d in out_dir.variant_dirs() if d.name != mine]
        if others:
            old, new = len(out_dir.names()), len(staged.names())
            raise EvalkitError(
                f"{out_dir.root} holds outputs of {', '.join(variant_from_dir(o) for o in others)} for other inputs "
                f"({old} samples there, {new} now, or other images); write to a new --out, or remove the folder",
                path=out_dir.root)
        if out_dir.variant(variant).exists():
            trash = staging_dir(out_dir.variant(variant))
            out_dir.variant(variant).rename(trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        replace_dir(staged.inputs, out_dir.inputs)
    replace_dir(staged.variant(variant), out_dir.variant(variant))
    return out_dir.variant(variant)
