"""Image-manipulation test sets (RABIT Table 2): the exemplar is the original image and
the conditional input is an edited label map.

Edit (object level, :func:`edit_object`): pick one connected region of one class
(area between ``min_area`` and ``max_area`` of the image), move it by ``(dx, dy)`` and
scale it by ``s`` about its centroid ``c`` — the affine map ``p ↦ s·(p - c) + c + (dx, dy)``
applied to the region in the label map, the image (and the instance map). The vacated hole
takes the label of the nearest pixel outside the region (the surrounding background
label); in the image it is inpainted (OpenCV Telea), giving a pseudo ground truth.

Layout written by ``evalkit data manipulation`` and read back by the ``manipulation``
dataset (all maps at the written size)::

    OUT/meta.json                 source dataset, num_classes, cond_channels, instance, size, seed
    OUT/edits.csv                 name,source,class,area,dx,dy,scale  (dx, dy in pixels)
    OUT/label/<name>.png          edited index map = the conditional input
    OUT/image/<name>.png          edited image (object moved, hole inpainted): pseudo ground truth
    OUT/exemplar/<name>.png       original image = the exemplar
    OUT/exemplar_label/<name>.png original index map
    OUT/inst/<name>.png, OUT/exemplar_inst/<name>.png   instance maps (COCO-Stuff only)

Index maps hold the dataset's channel indices (e.g. COCO-Stuff unlabeled = 182).
For the built-in scenes (``shapes-manipulation``) the edit is exact: move/scale one
object of the layout and re-render it in the same style.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

from evalkit.data.ade20k import one_hot
from evalkit.data.cocostuff import instance_edges
from evalkit.data.pairs import image_to_tensor
from evalkit.data.registry import dataset_spec, get_dataset, register_dataset
from evalkit.data.sample import Sample, to_uint8_image
from evalkit.data.shapes import ShapesDataset, _grid, _mask, edit_layout
from evalkit.data.transforms import get_params, apply_pil
from evalkit.errors import EvalkitError
from evalkit.files import atomic_dir, open_label, open_rgb

__all__ = ["Edit", "edit_object", "pick_edit", "write_manipulation_set", "ManipulationSet", "ShapesManipulation"]

IGNORE = {"ade20k": (0,), "ade20k-spade": (150,), "cocostuff": (182,), "celebahq": (0,)}  # unlabeled/background


@dataclass(frozen=True)
class Edit:
    cls: int
    area: int
    dx: float  # pixels
    dy: float
    scale: float


def edit_object(label: np.ndarray, image: np.ndarray, mask: np.ndarray, dx: float, dy: float, scale: float,
                inst: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Move/scale the region ``mask`` (bool ``[H, W]``) in ``label``, ``image`` (uint8 ``[H, W, 3]``)
    and ``inst``; the hole takes the nearest outside label and is inpainted in the image."""
    h, w = label.shape
    _, (iy, ix) = ndimage.distance_transform_edt(mask, return_indices=True)
    new_label = label[iy, ix]
    new_inst = None if inst is None else inst[iy, ix]
    new_image = cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    cy, cx = ndimage.center_of_mass(mask)
    m = np.array([[scale, 0.0, (1 - scale) * cx + dx], [0.0, scale, (1 - scale) * cy + dy]], dtype=np.float64)
    moved = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    cls = label[mask][0]
    new_label[moved] = cls
    warped = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    new_image[moved] = warped[moved]
    if inst is not None:
        new_inst[moved] = cv2.warpAffine(inst, m, (w, h), flags=cv2.INTER_NEAREST)[moved]
    return new_label, new_image, new_inst


def pick_edit(label: np.ndarray, rng: np.random.Generator, ignore: tuple[int, ...] = (), *, min_area: float = 0.01,
              max_area: float = 0.25, max_shift: float = 0.2, scale_range: tuple[float, float] = (0.8, 1.25)
              ) -> tuple[np.ndarray, Edit] | None:
    """A random connected region (not of an ``ignore`` class) and an edit that keeps it
    inside the image; None when no region has a suitable area."""
    h, w = label.shape
    regions = []
    for c in np.unique(label):
        if int(c) in ignore:
            continue
        n, comp = cv2.connectedComponents((label == c).astype(np.uint8), connectivity=4)
        for j in range(1, n):
            area = int((comp == j).sum())
            if min_area * h * w <= area <= max_area * h * w:
                regions.append((int(c), j, comp))
    if not regions:
        return None
    c, j, comp = regions[int(rng.integers(len(regions)))]
    mask = comp == j
    s = float(rng.uniform(*scale_range))
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    lo_x, hi_x = cx + s * (xs.min() - cx), cx + s * (xs.max() - cx)
    lo_y, hi_y = cy + s * (ys.min() - cy), cy + s * (ys.max() - cy)
    # shifts keeping the scaled region inside the image, capped at max_shift of the size
    dx_range = (max(-lo_x, -max_shift * w), min(w - 1 - hi_x, max_shift * w))
    dy_range = (max(-lo_y, -max_shift * h), min(h - 1 - hi_y, max_shift * h))
    dx = float(rng.uniform(*dx_range)) if dx_range[0] < dx_range[1] else 0.0
    dy = float(rng.uniform(*dy_range)) if dy_range[0] < dy_range[1] else 0.0
    return mask, Edit(c, int(mask.sum()), dx, dy, s)


def _shapes_records(ds: "ShapesManipulation"):
    for i in range(len(ds)):
        s = ds[i]
        yield dict(name=s.name, source=f"{ds.base.name}:{ds.base.split}:{i}", edit=ds.edit(i),
                   label=s.label.numpy().astype(np.uint8), image=to_uint8_image(s.image),
                   exemplar=to_uint8_image(s.exemplar), exemplar_label=s.exemplar_label.numpy().astype(np.uint8))


def _real_records(ds, ignore: tuple[int, ...], seed: int, size: int, max_shift: float,
                  scale_range: tuple[float, float], progress: bool):
    rng = np.random.default_rng(seed)
    params = get_params(rng, "test", size)
    keys = [it.key for it in ds.items]
    for k, key in enumerate(keys):
        if progress:
            print(f"\rmanipulation {k + 1}/{len(keys)}", end="", file=sys.stderr)
        image_t, _, label_t = ds.load(key, False, params)
        label, image = label_t.numpy(), to_uint8_image(image_t)
        inst = None
        if getattr(ds, "instance", False):
            inst_path = ds.label_files(key, False)[1]
            inst = np.asarray(apply_pil(Image.fromarray(open_label(inst_path, "instance map")), params, Image.NEAREST))
        picked = pick_edit(label, rng, ignore, max_shift=max_shift, scale_range=scale_range)
        if picked is None:
            print(f"note: {key}: no region of a suitable size to edit; skipped", file=sys.stderr)
            continue
        mask, e = picked
        new_label, new_image, new_inst = edit_object(label, image, mask, e.dx, e.dy, e.scale, inst)
        rec = dict(name=ds.sample_name(key), source=key, edit=e, label=new_label.astype(np.uint8), image=new_image,
                   exemplar=image, exemplar_label=label.astype(np.uint8))
        if inst is not None:
            rec.update(inst=new_inst.astype(np.uint8), exemplar_inst=inst.astype(np.uint8))
        yield rec


def write_manipulation_set(name: str, root: str | Path | None, out: str | Path, *, split: str = "test",
                           size: int = 256, n: int | None = None, seed: int = 0, max_shift: float = 0.2,
                           scale_range: tuple[float, float] = (0.8, 1.25), progress: bool = True) -> dict:
    """Build and write a manipulation set (layout in the module docstring); returns meta.

    Samples are written one by one into a temporary folder beside ``out`` that replaces
    ``out`` only once complete (:func:`evalkit.files.atomic_dir`)."""
    if size < 8:
        raise EvalkitError(f"--size {size} is too small for a manipulation set; use at least 8 pixels")
    if n is not None and n < 1:
        raise EvalkitError(f"--n {n}: ask for at least one sample")
    if seed < 0:
        raise EvalkitError(f"--seed {seed}: seeds are integers >= 0")
    if not 0.0 <= max_shift <= 1.0:
        raise EvalkitError(f"--max-shift {max_shift} must be a fraction of the size in [0, 1]")
    if not 0.0 < scale_range[0] <= scale_range[1]:
        raise EvalkitError(f"--scale-min {scale_range[0]} / --scale-max {scale_range[1]}: "
                           "need 0 < scale-min <= scale-max")
    spec = dataset_spec(name)
    if not name.startswith("shapes") and spec.name not in IGNORE:
        raise EvalkitError(f"manipulation sets need a label-map dataset ({', '.join(IGNORE)}), not {name!r}")
    with atomic_dir(out) as tmp:
        if name.startswith("shapes"):
            ds = ShapesManipulation(split=split, size=size, n=n or 64, seed=seed, max_shift=max_shift,
                                    scale_range=scale_range)
            records, instance = _shapes_records(ds), False
        else:
            ds = get_dataset(name, root=root, split=split, size=size, require_pairs=False)
            instance = bool(getattr(ds, "instance", False))
            records = _real_records(ds, IGNORE[spec.name], seed, size, max_shift, scale_range, progress)
        folders = ["label", "image", "exemplar", "exemplar_label"] + (["inst", "exemplar_inst"] if instance else [])
        for f in folders:
            (tmp / f).mkdir()
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["name", "source", "class", "area", "dx", "dy", "scale"])
        count = 0
        for r in records:
            for f in folders:  # plain saves: the folder as a whole is committed atomically
                Image.fromarray(r[f]).save(tmp / f / f"{r['name']}.png")
            e = r["edit"]
            writer.writerow([r["name"], r["source"], e.cls, e.area, f"{e.dx:.3f}", f"{e.dy:.3f}", f"{e.scale:.4f}"])
            count += 1
            if n is not None and count >= n:
                break
        if progress and not name.startswith("shapes"):
            print(file=sys.stderr)
        if not count:
            raise EvalkitError(f"no sample of {name} {split} had a region to edit; nothing written")
        meta = dict(source=name, split=split, size=size, seed=seed, n=count, num_classes=ds.num_classes,
                    instance=instance, cond_channels=ds.num_classes + int(instance), max_shift=max_shift,
                    scale_range=list(scale_range))
        (tmp / "edits.csv").write_text(table.getvalue(), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


class ShapesManipulation(Dataset):
    """Built-in manipulation pairs: exemplar = a scene in its own style, condition = the
    scene's layout with one object moved/scaled, ground truth = the edited layout
    re-rendered in the same style (exact, no inpainting)."""

    cond_kind = "label"

    def __init__(self, *, split: str = "test", size: int = 64, n: int | None = None, seed: int = 0,
                 max_shift: float = 0.2, scale_range: tuple[float, float] = (0.8, 1.25), **kw):
        self.base = ShapesDataset(split=split, size=size, n=n, seed=seed, **kw)
        self.name, self.max_shift, self.scale_range = "shapes-manipulation", max_shift, scale_range
        self.cond_channels, self.num_classes = self.base.cond_channels, self.base.num_classes

    def __len__(self) -> int:
        return len(self.base)

    def _edited(self, i: int):
        sc = self.base.scene(i)
        layout = sc["query_layout"]
        rng = self.base.rng(i, 5)
        candidates = [j for j, s in enumerate(layout.shapes) if s.kind != "stripe"] or list(range(len(layout.shapes)))
        j = int(candidates[int(rng.integers(len(candidates)))])
        dx, dy = (float(v) for v in rng.uniform(-self.max_shift, self.max_shift, size=2))
        s = float(rng.uniform(*self.scale_range))
        return sc, layout, edit_layout(layout, j, dx=dx, dy=dy, scale=s), (layout.shapes[j].cls, dx, dy, s, j)

    def edit(self, i: int) -> Edit:
        """The edit of sample ``i`` (area: the object's pixels before the edit, occlusion ignored)."""
        _, layout, _, (cls, dx, dy, s, j) = self._edited(i)
        x, y = _grid(self.base.size)
        area = int(_mask(layout.shapes[j], x, y).sum())
        return Edit(cls, area, dx * self.base.size, dy * self.base.size, s)

    def __getitem__(self, i: int) -> Sample:
        sc, layout, edited, _ = self._edited(i)
        name = f"{self.name}_{self.base.split}_{i:05d}"
        return self.base.make_sample(i, edited, layout, sc["query_style"], name, f"{name}_original", name)


class ManipulationSet(Dataset):
    """Reads the layout written by :func:`write_manipulation_set` (test split only)."""

    cond_kind = "label"

    def __init__(self, *, root: Path, split: str = "test", size: int = 256, n: int | None = None, seed: int = 0):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise EvalkitError(f"not a manipulation set: {meta_path} missing; build one with `evalkit data manipulation`",
                               path=meta_path)
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with open(self.root / "edits.csv", newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))
        except (OSError, ValueError) as err:
            raise EvalkitError(f"cannot read manipulation set {self.root}: {err}", path=self.root) from err
        if split != "test":
            raise EvalkitError(f"manipulation sets have a test split only, not {split!r}")
        if not self.rows:
            raise EvalkitError(f"empty split: {self.root / 'edits.csv'} lists no samples", path=self.root / "edits.csv")
        self.rows = self.rows[:n] if n is not None else self.rows
        try:
            self.name = f"manipulation:{self.meta['source']}"
            self.size, self.num_classes = size, int(self.meta["num_classes"])
            self.cond_channels = int(self.meta["cond_channels"])
            self.meta["instance"] = bool(self.meta["instance"])
            if self.rows[0].get("name") is None:  # DictReader: every row has the header's columns
                raise KeyError("column 'name'")
        except (KeyError, TypeError, ValueError) as err:
            raise EvalkitError(f"not a manipulation set: {meta_path} or edits.csv lacks {err}; rebuild it with "
                               "`evalkit data manipulation`", path=self.root) from err
        self.params = get_params(np.random.default_rng(0), "test", size)

    def __len__(self) -> int:
        return len(self.rows)

    def _cond(self, folder: str, inst_folder: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.root / folder / f"{name}.png"
        lab = np.asarray(apply_pil(Image.fromarray(open_label(path)), self.params, Image.NEAREST)).astype(np.int64)
        if lab.max() >= self.num_classes:
            raise EvalkitError(f"label id {int(lab.max())} out of range in {path} (0..{self.num_classes - 1})", path=path)
        cond = one_hot(lab, self.num_classes)
        if self.meta["instance"]:
            ipath = self.root / inst_folder / f"{name}.png"
            inst = np.asarray(apply_pil(Image.fromarray(open_label(ipath, "instance map")), self.params, Image.NEAREST))
            cond = torch.cat([cond, torch.from_numpy(instance_edges(inst))[None]])
        return cond, torch.from_numpy(lab)

    def __getitem__(self, i: int) -> Sample:
        name = self.rows[i]["name"]
        cond, label = self._cond("label", "inst", name)
        ex_cond, ex_label = self._cond("exemplar_label", "exemplar_inst", name)

        def img(folder: str) -> torch.Tensor:
            return image_to_tensor(apply_pil(open_rgb(self.root / folder / f"{name}.png"), self.params, Image.BICUBIC))

        return Sample(cond=cond, image=img("image"), exemplar=img("exemplar"), exemplar_cond=ex_cond, self_ref=False,
                      name=name, exemplar_name=f"{name}_original", label=label, exemplar_label=ex_label)


@register_dataset("manipulation", description="a manipulation set written by `evalkit data manipulation`",
                  needs_root=True, cond_kind="label", layout="meta.json, edits.csv, label/, image/, exemplar/, exemplar_label/")
def _manipulation(*, root, split, size, n, seed, **kw) -> ManipulationSet:
    return ManipulationSet(root=root, split=split, size=size, n=n, seed=seed, **kw)


@register_dataset("shapes-manipulation", description="built-in: one object of a scene moved/scaled, re-rendered",
                  needs_root=False, cond_kind="label")
def _shapes_manipulation(*, root=None, split="test", size=64, n=None, seed=0, **kw) -> ShapesManipulation:
    return ShapesManipulation(split=split, size=size, n=n, seed=seed, **kw)
