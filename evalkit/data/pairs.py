"""Exemplar pair lists and the paired-dataset base class of the official layouts.

Pair list (CoCosNet ``data/<dataset>_ref[_test].txt``): one line per query,
``query,exemplar1[,exemplar2,...]``; paths may use backslashes (DeepFashion). At test
time the first exemplar is used. At train time CoCosNet (``data/pix2pix_dataset.py``)
draws ``p ~ U[0, 1)``: ``p < hard_reference_probability`` (0.2) → the *last* exemplar
(hard), ``p < real_reference_probability`` (0.7) → the first (easy), otherwise a
*self-reference*: the ground truth itself, re-cropped and flipped with fresh transform
parameters (so 20% hard, 50% easy, 30% self-reference).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from evalkit.data.sample import Sample
from evalkit.data.transforms import TransformParams, apply_pil, get_params
from evalkit.errors import EvalkitError
from evalkit.files import open_label, write_atomic
from evalkit.files import open_rgb as open_image  # the name the datasets and retrieval import

__all__ = [
    "read_pair_list", "parse_pair_list", "read_text", "write_pair_list", "normalise_key", "choose_exemplar", "PairedDataset",
    "open_image", "open_label", "check_label_range", "image_to_tensor",
]

def normalise_key(text: str) -> str:
    """A pair-list entry as a forward-slash relative path."""
    return text.strip().replace("\\", "/")


def read_text(path: Path, what: str, expected: str) -> str:
    """A listing of a dataset layout as UTF-8 text, a byte-order mark dropped (EvalkitError
    naming it when it is not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise EvalkitError(f"{what} {path} is not UTF-8 text (byte {err.start}); expected {expected}",
                           path=path) from err


def parse_pair_list(path: str | Path) -> tuple[dict[str, list[str]], list[str]]:
    """``({query: [exemplar, ...]}, problems)`` from a CoCosNet pair list: every malformed
    line (fewer than two entries, an empty entry, a query listed a second time) is one
    problem (``file:line: ...``) and is skipped; blank lines are ignored; a UTF-8 byte-order
    mark is dropped."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"pair list not found: {path}; pass --pairs or build one with `evalkit data pairs`", path=path)
    text = read_text(path, "pair list", "lines 'query,exemplar[,...]'")
    pairs: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        items = [normalise_key(t) for t in line.split(",")]
        if len(items) < 2 or not all(items):
            problems.append(f"{path}:{number}: expected 'query,exemplar[,...]', got {line.strip()!r}")
            continue
        if items[0] in pairs:
            problems.append(f"{path}:{number}: query {items[0]} is listed again (first on line "
                            f"{first_line[items[0]]}); keep one line per query")
            continue
        pairs[items[0]], first_line[items[0]] = items[1:], number
    if not pairs and not problems:
        raise EvalkitError(f"pair list {path} is empty; build one with `evalkit data pairs`", path=path)
    return pairs, problems


def read_pair_list(path: str | Path) -> dict[str, list[str]]:
    """``{query: [exemplar, ...]}`` from a CoCosNet pair list (blank lines skipped); the
    first malformed line raises (``evalkit data check`` lists them all)."""
    pairs, problems = parse_pair_list(path)
    if problems:
        more = f" (and {len(problems) - 1} more malformed lines)" if len(problems) > 1 else ""
        raise EvalkitError(problems[0] + more, path=Path(path))
    return pairs


def write_pair_list(path: str | Path, pairs: dict[str, list[str]]) -> Path:
    """Write a pair list atomically (:func:`evalkit.files.write_atomic`)."""
    return write_atomic(path, "".join(",".join([query, *exemplars]) + "\n" for query, exemplars in pairs.items()))


def choose_exemplar(exemplars: list[str], split: str, rng: np.random.Generator,
                    real_reference_probability: float = 0.7,
                    hard_reference_probability: float = 0.2) -> str | None:
    """CoCosNet's exemplar choice (``data/pix2pix_dataset.py``): test -> the first listed
    exemplar; train -> one uniform draw ``p``: ``p < hard`` the second listed ("hard")
    exemplar, ``hard <= p < real`` the first ("easy"), else None (a self-reference pair).
    A list with one exemplar uses it for both."""
    if split == "test":
        return exemplars[0]
    p = float(rng.uniform())
    if p < real_reference_probability:
        return hard_exemplar(exemplars) if p < hard_reference_probability else exemplars[0]
    return None


def hard_exemplar(exemplars: list[str]) -> str:
    """CoCosNet's hard reference: ``val[1]``, the second exemplar of the line (not the last)."""
    return exemplars[1] if len(exemplars) > 1 else exemplars[0]


def check_label_range(label: np.ndarray, valid: np.ndarray, path: Path) -> None:
    """Every value of ``label`` must be in ``valid`` (a sorted array of allowed ids)."""
    values = np.unique(label)
    bad = values[~np.isin(values, valid)]
    if len(bad):
        runs, start = [], int(valid[0])  # "0..15, 17..18, 255"
        for a, b in zip(valid[:-1], valid[1:]):
            if b != a + 1:
                runs.append(f"{start}..{int(a)}" if start != a else str(start))
                start = int(b)
        runs.append(f"{start}..{int(valid[-1])}" if start != valid[-1] else str(start))
        raise EvalkitError(f"label id {int(bad[0])} out of range in {path} (allowed: {', '.join(runs)}); "
                           f"wrong dataset or corrupt label map", path=path)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB → float ``[3, H, W]`` in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()) * 2.0 - 1.0


@dataclass
class _Item:
    key: str  # the pair-list key of the query
    exemplars: list[str]
    pick: int | None = None  # test split, exemplars_per_query > 1: which listed exemplar this sample uses


class PairedDataset(Dataset, abc.ABC):
    """Base of the official layouts: query keys, a pair list, CoCosNet transforms.

    Subclasses set ``name``, ``cond_channels``, ``num_classes``, ``cond_kind``,
    ``pair_stem`` and implement :meth:`list_keys`, :meth:`image_path`, :meth:`encode`
    (and :meth:`label_files` for validation). ``epoch`` (see :meth:`set_epoch`) enters the
    per-sample generator so that train crops change between epochs. Problems found while
    indexing (missing files, malformed pair-list lines, queries without a line) raise the
    first one; ``collect_problems=True`` (``evalkit data check``) keeps them all in
    ``.problems`` instead and indexes what is usable.
    """

    name = "paired"
    cond_channels = 0
    num_classes: int | None = None
    cond_kind = "label"
    pair_stem = ""  # CoCosNet's pair-list name: data/<pair_stem>_ref[_test].txt

    def __init__(self, *, root: Path, split: str = "test", size: int = 256, n: int | None = None,
                 seed: int = 0, pairs: str | Path | None = None, collect_problems: bool = False,
                 require_pairs: bool = True, exemplars_per_query: int = 1,
                 real_reference_probability: float = 0.7, hard_reference_probability: float = 0.2):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EvalkitError(f"dataset root not found: {self.root}; pass the folder laid out as in docs/data.md",
                               path=self.root)
        self.split, self.size, self.seed, self.epoch = split, int(size), int(seed), 0
        self.real_p, self.hard_p = float(real_reference_probability), float(hard_reference_probability)
        keys = self.list_keys()
        if not keys:
            raise EvalkitError(f"empty split {split!r}: no samples found for {self.name} under {self.root} "
                               f"({self.split_source()}); check --root and --split", path=self.root)
        self.problems: list[str] = self.orphan_problems()
        self.keys = keys
        if not require_pairs:  # key listing only (retrieval builds the pair list; `data check` without one)
            self.pairs_path, self.items = None, [_Item(k, []) for k in (keys[:n] if n is not None else keys)]
            self.problems += self._missing_files()
            return
        self.pairs_path = Path(pairs) if pairs is not None else self.default_pairs_path()
        pair_dict, malformed = parse_pair_list(self.pairs_path)
        self.problems += malformed
        items = []
        for key in keys:
            if key not in pair_dict:
                self.problems.append(f"{self.pairs_path}: no exemplar listed for query {key}; add a line "
                                     f"'{key},<exemplar>' or rebuild with `evalkit data pairs`")
                continue
            items.append(_Item(key, pair_dict[key]))
        k = int(exemplars_per_query)
        if k < 1:
            raise EvalkitError(f"exemplars_per_query={k}: give 1 or more (the first K exemplars of each pair-list line)")
        if k > 1 and split == "test":  # RABIT/UNITE's LPIPS diversity: K outputs per query, one per listed exemplar
            short = [it.key for it in items if len(it.exemplars) < k]
            if short:
                self.problems.append(f"{self.pairs_path}: exemplars_per_query={k} but the line of {short[0]} lists "
                                     f"{len(next(it for it in items if it.key == short[0]).exemplars)} exemplar(s) "
                                     f"({len(short)} such line(s)); list {k} per query or lower exemplars_per_query")
            items = [_Item(it.key, it.exemplars, j) for it in items for j in range(min(k, len(it.exemplars)))]
        self.items = items[:n] if n is not None else items
        self.problems += self._missing_files()
        if self.problems and not collect_problems:
            more = f" (and {len(self.problems) - 1} more problems; run `evalkit data check`)" if len(self.problems) > 1 else ""
            raise EvalkitError(self.problems[0] + more)

    # -- subclass hooks -------------------------------------------------------------------
    @abc.abstractmethod
    def list_keys(self) -> list[str]:
        ...

    @abc.abstractmethod
    def split_source(self) -> str:
        """Where the keys of the split come from (for the empty-split message)."""
        ...

    def orphan_problems(self) -> list[str]:
        """Annotations of the split whose image is missing (layouts listing images by folder)."""
        return []

    @abc.abstractmethod
    def image_path(self, key: str, exemplar: bool) -> Path:
        ...

    @abc.abstractmethod
    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        """Annotation files that must exist for ``key``."""
        ...

    @abc.abstractmethod
    def encode(self, key: str, exemplar: bool, params: TransformParams,
               image: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(cond [C, size, size], label [size, size] long or None)`` under ``params``."""
        ...

    @staticmethod
    def check_same_size(image: Image.Image, label: np.ndarray, label_path: Path) -> None:
        """Image and label map must have the same pixel size."""
        if (label.shape[1], label.shape[0]) != image.size:
            raise EvalkitError(f"image/label size mismatch: {label_path} is {label.shape[1]}x{label.shape[0]} but its "
                               f"image is {image.size[0]}x{image.size[1]}; the label map belongs to another image",
                               path=label_path)

    def sample_name(self, key: str) -> str:
        return Path(key).with_suffix("").as_posix().replace("/", "__")

    # -- shared machinery ---------------------------------------------------------------
    def default_pairs_path(self) -> Path:
        """``<root>/<stem>_ref[_test].txt`` or, CoCosNet's layout, ``<root>/../../data/...``."""
        fname = f"{self.pair_stem}_ref{'_test' if self.split == 'test' else ''}.txt"
        candidates = [self.root / fname, self.root.parent.parent / "data" / fname]
        for c in candidates:
            if c.is_file():
                return c
        raise EvalkitError(f"no pair list for {self.name} {self.split}: looked for {candidates[0]} and "
                           f"{candidates[1]}; pass --pairs or build one with `evalkit data pairs`",
                           path=candidates[0])

    def _refs(self, item: _Item) -> list[tuple[str, bool]]:
        """The query and the exemplars it may use (test: the first; train: first and last)."""
        if not item.exemplars:  # listed without a pair list (require_pairs=False)
            return [(item.key, False)]
        if item.pick is not None:
            return [(item.key, False), (item.exemplars[item.pick], True)]
        used = item.exemplars[:1] if self.split == "test" else list(dict.fromkeys([item.exemplars[0], hard_exemplar(item.exemplars)]))
        return [(item.key, False)] + [(e, True) for e in used]

    def _missing_files(self) -> list[str]:
        problems = []
        seen: set[tuple[str, bool]] = set()
        for item in self.items:
            for key, is_ex in self._refs(item):
                if (key, is_ex) in seen:
                    continue
                seen.add((key, is_ex))
                img = self.image_path(key, is_ex)
                where = f" (exemplar of {item.key} in {self.pairs_path})" if is_ex else ""
                if not img.is_file():
                    problems.append(f"image not found: {img}{where}")
                for lab in self.label_files(key, is_ex):
                    if not lab.is_file():
                        problems.append(f"annotation not found: {lab} (for image {img}){where}")
        return problems

    def set_epoch(self, epoch: int) -> None:
        """Re-draw train crops, flips and exemplar choices for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, key: str, exemplar: bool, params: TransformParams):
        """``(image tensor, cond, label)`` of one key under ``params``."""
        image = open_image(self.image_path(key, exemplar))
        cond, label = self.encode(key, exemplar, params, image)
        return image_to_tensor(apply_pil(image, params, Image.BICUBIC)), cond, label

    def __getitem__(self, i: int) -> Sample:
        item = self.items[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, cond, label = self.load(item.key, False, get_params(rng, self.split, self.size))
        ex_key = (item.exemplars[item.pick] if item.pick is not None
                  else choose_exemplar(item.exemplars, self.split, rng, self.real_p, self.hard_p))
        self_ref = ex_key is None
        if self_ref:  # the ground truth with fresh crop/flip parameters
            ex, ex_cond, ex_label = self.load(item.key, False, get_params(rng, "train", self.size))
            ex_key = item.key
        else:
            ex, ex_cond, ex_label = self.load(ex_key, True, get_params(rng, self.split, self.size))
        query = self.sample_name(item.key)
        return Sample(cond=cond, image=image, exemplar=ex, exemplar_cond=ex_cond, self_ref=self_ref,
                      name=query if item.pick is None else f"{query}_e{item.pick}",
                      exemplar_name=self.sample_name(ex_key), label=label, exemplar_label=ex_label, query=query)

    def validate(self) -> list[str]:
        """Every problem of this dataset: missing files, then decode/encode errors of each
        query and its exemplars (used by ``evalkit data check``)."""
        problems = list(self.problems)
        p = get_params(np.random.default_rng(0), "test", self.size)
        done: set[tuple[str, bool]] = set()
        for item in self.items:
            for key, is_ex in self._refs(item):
                if (key, is_ex) in done:
                    continue
                done.add((key, is_ex))
                files = [self.image_path(key, is_ex), *self.label_files(key, is_ex)]
                if not all(f.is_file() for f in files):  # already reported as missing
                    continue
                try:
                    self.load(key, is_ex, p)
                except EvalkitError as err:
                    problems.append(str(err))
        return problems
