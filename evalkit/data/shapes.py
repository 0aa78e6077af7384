"""The built-in paired dataset "shapes": procedural scenes with a real ground truth.

A *scene* is a layout (label map of ``K`` classes: background 0, ellipses, convex
polygons and stripes of classes ``1..K-1``) rendered in a *style* (per-class palette
colour + texture: noise, stripes or checks, plus a shared low-frequency shading field).
Sample ``i`` of a split draws, from its own ``numpy`` generator seeded by
``(seed, split, query, stream)``:

- the query layout ``Lq`` and an exemplar layout ``Le`` (different geometry, holding
  every class of ``Lq``), and two styles ``Sq``, ``Se``;
- ``image`` (ground truth) = ``render(Lq, Se)``, ``exemplar`` = ``render(Le, Se)``.

So the ground truth is the query layout in the *exemplar's* style: a label-only method
cannot know the colours, an exemplar-based one can copy them. ``render(Lq, Sq)`` (the
query's own style) is what a method that ignores the exemplar would at best produce.
Every sample is generated lazily and independently (bit-identical across runs and
processes). Geometry lives in normalised coordinates, so any resolution works.

Condition variants of the same scenes: ``shapes`` (one-hot labels, ``K`` channels),
``shapes-edge`` (semantic boundary map + normalised distance to it, 2 channels, in the
spirit of CoCosNet's edge + distance-transform inputs), ``shapes-keypoints`` (one
Gaussian heat map per object class at each object's centre and axis extremities,
``K - 1`` channels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from evalkit.data.registry import register_dataset
from evalkit.data.sample import Sample
from evalkit.errors import EvalkitError

__all__ = [
    "Shape", "Layout", "Style", "ShapesDataset", "random_layout", "random_style",
    "rasterise", "render", "edge_channels", "keypoint_channels", "edit_layout",
]

DEFAULT_N = {"train": 2048, "test": 256}
SPLIT_ID = {"train": 0, "test": 1}
# generator streams of one query
_Q_LAYOUT, _Q_STYLE, _E_LAYOUT, _E_STYLE, _AUG = 0, 1, 2, 3, 4
TEXTURES = ("noise", "stripes", "checks")


@dataclass(frozen=True)
class Shape:
    """One object in normalised [0, 1]² coordinates.

    ``ellipse``: radii ``(rx, ry)``, rotated by ``angle``. ``polygon``: convex, vertices at
    ``centre + r·(cos a, sin a)`` for the sorted angles ``verts`` (``r = rx``).
    ``stripe``: the band ``|(p - centre)·(cos angle, sin angle)| <= rx`` across the image.
    """

    kind: str
    cls: int
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    verts: tuple[float, ...] = ()


@dataclass(frozen=True)
class Layout:
    num_classes: int
    shapes: tuple[Shape, ...]  # painted in order; later shapes occlude earlier ones


@dataclass(frozen=True)
class Style:
    palette: np.ndarray  # [K, 3] in [0, 1]
    texture: tuple[str, ...]  # per class
    freq: np.ndarray  # [K] cycles per image width
    tangle: np.ndarray  # [K] texture orientation
    phase: np.ndarray  # [K]
    amp: np.ndarray  # [K] texture amplitude
    shading: np.ndarray  # [G, G] low-frequency field in [-1, 1]
    shade_amp: float
    noise: np.ndarray  # [4G, 4G] higher-frequency field in [-1, 1], the "noise" texture


def _random_shape(rng: np.random.Generator, cls: int) -> Shape:
    r = rng.random(12)  # one draw per shape: kind, centre, angle, sizes, vertex angles
    kind = "ellipse" if r[0] < 0.45 else "polygon" if r[0] < 0.85 else "stripe"
    cx, cy = 0.15 + 0.7 * r[1], 0.15 + 0.7 * r[2]
    angle = float(np.pi * r[3])
    if kind == "ellipse":
        return Shape(kind, cls, float(cx), float(cy), float(0.08 + 0.2 * r[4]), float(0.08 + 0.2 * r[5]), angle)
    if kind == "polygon":
        radius = float(0.1 + 0.2 * r[4])
        k = 3 + int(r[5] * 4)  # 3..6 vertices on a circle: convex
        verts = tuple(float(a) for a in np.sort(2 * np.pi * r[6:6 + k]))
        return Shape(kind, cls, float(cx), float(cy), radius, radius, angle, verts)
    width = float(0.04 + 0.06 * r[4])
    return Shape(kind, cls, float(cx), float(cy), width, width, angle)


def random_layout(rng: np.random.Generator, num_classes: int, must_include: tuple[int, ...] = ()) -> Layout:
    """A random layout: 2–5 object classes (plus ``must_include``), 1–2 objects each."""
    objects = np.arange(1, num_classes)
    m = int(rng.integers(2, min(5, len(objects)) + 1))
    chosen = set(int(c) for c in rng.choice(objects, size=m, replace=False)) | set(must_include)
    shapes = []
    for cls in sorted(chosen):
        for _ in range(int(rng.integers(1, 3))):
            shapes.append(_random_shape(rng, cls))
    order = rng.permutation(len(shapes))
    # stripes first so that they do not hide whole objects
    ordered = sorted((shapes[i] for i in order), key=lambda s: s.kind != "stripe")
    return Layout(num_classes, tuple(ordered))


def random_style(rng: np.random.Generator, num_classes: int, grid: int = 6) -> Style:
    return Style(
        palette=rng.uniform(0.05, 0.95, size=(num_classes, 3)),
        texture=tuple(TEXTURES[int(i)] for i in rng.integers(0, 3, size=num_classes)),
        freq=rng.uniform(3.0, 10.0, size=num_classes),
        tangle=rng.uniform(0, np.pi, size=num_classes),
        phase=rng.uniform(0, 2 * np.pi, size=num_classes),
        amp=rng.uniform(0.08, 0.3, size=num_classes),
        shading=rng.uniform(-1, 1, size=(grid, grid)),
        shade_amp=float(rng.uniform(0.05, 0.15)),
        noise=rng.uniform(-1, 1, size=(4 * grid, 4 * grid)),
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return t[None, :].repeat(size, 0), t[:, None].repeat(size, 1)  # x, y


def _mask(shape: Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx, dy = x - shape.cx, y - shape.cy
    c, s = np.cos(shape.angle), np.sin(shape.angle)
    if shape.kind == "ellipse":
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (u / shape.rx) ** 2 + (v / shape.ry) ** 2 <= 1.0
    if shape.kind == "stripe":
        return np.abs(dx * c + dy * s) <= shape.rx
    angles = np.asarray(shape.verts) + shape.angle
    vx, vy = shape.rx * np.cos(angles), shape.rx * np.sin(angles)
    inside = np.ones_like(x, dtype=bool)
    for k in range(len(angles)):  # counter-clockwise vertices: inside = left of every edge
        ax, ay, bx, by = vx[k], vy[k], vx[(k + 1) % len(angles)], vy[(k + 1) % len(angles)]
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
    return inside


def rasterise(layout: Layout, size: int) -> np.ndarray:
    """The ``[size, size]`` int64 label map of a layout (0 = background)."""
    x, y = _grid(size)
    label = np.zeros((size, size), dtype=np.int64)
    for shape in layout.shapes:
        label[_mask(shape, x, y)] = shape.cls
    return label


def render(label: np.ndarray, style: Style) -> np.ndarray:
    """Image ``[H, W, 3]`` float32 in [0, 1] of a label map in a style.

    ``I(p) = clip(palette[c] · (1 + amp[c]·T_c(p) + shade_amp·G(p)))`` with ``c = label(p)``,
    ``T_c`` the class texture (noise: a finer random field; stripes:
    ``sin(2π f u + φ)``; checks: ``sign(sin(2π f u)·sin(2π f v))``) and ``G`` the shared
    bilinearly upsampled shading field.
    """
    size = label.shape[0]
    x, y = _grid(size)
    shade = cv2.resize(style.shading.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    fine = cv2.resize(style.noise.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    # every class texture on the whole grid ([K, H, W], vectorised), then gathered by label
    ca = np.cos(style.tangle).astype(np.float32)[:, None, None]
    sa = np.sin(style.tangle).astype(np.float32)[:, None, None]
    w = (2 * np.pi * style.freq).astype(np.float32)[:, None, None]
    u, v = x[None] * ca + y[None] * sa, y[None] * ca - x[None] * sa
    wave = np.sin(w * u + style.phase.astype(np.float32)[:, None, None])
    kinds = np.asarray(style.texture)[:, None, None]
    tex_all = np.where(kinds == "stripes", wave,
                       np.where(kinds == "checks", np.sign(wave * np.sin(w * v)), fine[None]))
    tex = np.take_along_axis(tex_all, label[None], axis=0)[0]
    gain = 1.0 + style.amp.astype(np.float32)[label] * tex + np.float32(style.shade_amp) * shade
    out = style.palette.astype(np.float32)[label] * gain[..., None]
    return np.clip(out, 0.0, 1.0)


def edge_channels(label: np.ndarray) -> np.ndarray:
    """``[2, H, W]``: semantic boundaries (1 where a 4-neighbour has another class) and
    the distance to the nearest boundary, divided by the image size (CoCosNet-style)."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[1:, :] != label[:-1, :]
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3) / label.shape[0]
    return np.stack([edge.astype(np.float32), dist.astype(np.float32)])


def _keypoints(shape: Shape) -> np.ndarray:
    """Centre and the four axis extremities of an object (normalised coordinates)."""
    c, s = np.cos(shape.angle), np.sin(shape.angle)
    ax, ay = np.array([c, s]) * shape.rx, np.array([-s, c]) * shape.ry
    centre = np.array([shape.cx, shape.cy])
    if shape.kind == "stripe":  # an endless band: its centre point only
        return centre[None]
    return np.stack([centre, centre + ax, centre - ax, centre + ay, centre - ay])


def keypoint_channels(layout: Layout, size: int, sigma: float = 0.025) -> np.ndarray:
    """``[K - 1, H, W]`` Gaussian heat maps (max over objects) of each object class's keypoints."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    heat = np.zeros((layout.num_classes - 1, size, size), dtype=np.float32)
    for shape in layout.shapes:
        for px, py in _keypoints(shape):  # separable Gaussian: outer product of 1-D profiles
            g = np.outer(np.exp(-((t - py) ** 2) / (2 * sigma**2)), np.exp(-((t - px) ** 2) / (2 * sigma**2)))
            np.maximum(heat[shape.cls - 1], g, out=heat[shape.cls - 1])
    return heat


def edit_layout(layout: Layout, index: int, *, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> Layout:
    """Move object ``index`` by ``(dx, dy)`` and scale it by ``scale`` (a manipulation edit)."""
    s = layout.shapes[index]
    edited = replace(s, cx=s.cx + dx, cy=s.cy + dy, rx=s.rx * scale, ry=s.ry * scale)
    shapes = layout.shapes[:index] + (edited,) + layout.shapes[index + 1:]
    return Layout(layout.num_classes, shapes)


def _one_hot(label: np.ndarray, k: int) -> np.ndarray:
    return (np.arange(k)[:, None, None] == label[None]).astype(np.float32)


def _image_tensor(img01: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img01.transpose(2, 0, 1))) * 2.0 - 1.0


class ShapesDataset(Dataset):
    """Procedural query/exemplar/ground-truth triples (see module docstring).

    ``exemplars_per_query`` > 1 gives several exemplars (styles) of one query layout, for
    LPIPS diversity; sample ``i`` is then query ``i // m``, exemplar ``i % m``. In the train
    split each draw is a self-reference pair with probability 0.3 (CoCosNet): the exemplar is
    the ground truth flipped and re-cropped, with its condition transformed alike; the draw
    changes with the epoch (:meth:`set_epoch`).
    """

    def __init__(self, *, split: str = "test", size: int = 64, n: int | None = None, seed: int = 0,
                 num_classes: int = 8, condition: str = "label", exemplars_per_query: int = 1,
                 self_ref_prob: float | None = None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 3:
            raise EvalkitError(f"shapes: num_classes must be an integer >= 3 (background + 2 objects), got {num_classes!r}")
        if isinstance(exemplars_per_query, bool) or not isinstance(exemplars_per_query, int) or exemplars_per_query < 1:
            raise EvalkitError(f"shapes: exemplars_per_query must be an integer >= 1, got {exemplars_per_query!r}")
        if condition not in ("label", "edge", "keypoints"):
            raise EvalkitError(f"shapes: condition must be label, edge or keypoints, got {condition!r}")
        if self_ref_prob is not None and (isinstance(self_ref_prob, bool) or not isinstance(self_ref_prob, (int, float))
                                          or not 0.0 <= self_ref_prob <= 1.0):
            raise EvalkitError(f"shapes: self_ref_prob must be a probability in [0, 1], got {self_ref_prob!r}")
        self.split, self.size, self.seed, self.epoch = split, int(size), int(seed), 0
        self.n = int(n if n is not None else DEFAULT_N[split])
        self.num_classes_total = int(num_classes)
        self.condition = condition
        self.m = int(exemplars_per_query)
        self.self_ref_prob = (0.3 if split == "train" else 0.0) if self_ref_prob is None else float(self_ref_prob)
        self.name = {"label": "shapes", "edge": "shapes-edge", "keypoints": "shapes-keypoints"}[condition]
        self.cond_kind = "label" if condition == "label" else "channels"
        self.cond_channels = {"label": num_classes, "edge": 2, "keypoints": num_classes - 1}[condition]
        self.num_classes = num_classes if condition == "label" else None

    def __len__(self) -> int:
        return self.n

    def rng(self, query: int, stream: int, exemplar: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_ID[self.split], query, stream, exemplar])

    def set_epoch(self, epoch: int) -> None:
        """Re-draw the train split's per-epoch choices (self-reference or not, the self-reference
        crop and flip) for epoch ``epoch``, as CoCosNet draws them anew for every sample it serves;
        the scenes themselves (layouts, styles: the data instance, ``seed``) never change."""
        self.epoch = int(epoch)

    def scene(self, i: int) -> dict:
        """Layouts and styles of sample ``i``: ``query_layout, query_style, exemplar_layout, exemplar_style``."""
        q, e = divmod(i, self.m)
        k = self.num_classes_total
        ql = random_layout(self.rng(q, _Q_LAYOUT), k)
        present = tuple(sorted({s.cls for s in ql.shapes}))
        return {
            "query_layout": ql,
            "query_style": random_style(self.rng(q, _Q_STYLE), k),
            "exemplar_layout": random_layout(self.rng(q, _E_LAYOUT, e), k, must_include=present),
            "exemplar_style": random_style(self.rng(q, _E_STYLE, e), k),
        }

    def _cond(self, layout: Layout, label: np.ndarray) -> np.ndarray:
        if self.condition == "label":
            return _one_hot(label, self.num_classes_total)
        if self.condition == "edge":
            return edge_channels(label)
        return keypoint_channels(layout, self.size)

    def make_sample(self, i: int, query_layout: Layout, exemplar_layout: Layout, style: Style,
                    name: str, exemplar_name: str, query: str) -> Sample:
        """Render a sample from explicit layouts in one style (used by manipulation sets too)."""
        ql, el = rasterise(query_layout, self.size), rasterise(exemplar_layout, self.size)
        return Sample(
            cond=torch.from_numpy(self._cond(query_layout, ql)),
            image=_image_tensor(render(ql, style)),
            exemplar=_image_tensor(render(el, style)),
            exemplar_cond=torch.from_numpy(self._cond(exemplar_layout, el)),
            self_ref=False, name=name, exemplar_name=exemplar_name,
            label=torch.from_numpy(ql), exemplar_label=torch.from_numpy(el), query=query,
        )

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        q, e = divmod(i, self.m)
        sc = self.scene(i)
        query = f"{self.name}_{self.split}_{q:05d}"
        name = query if self.m == 1 else f"{query}_e{e}"
        aug = np.random.default_rng([self.seed, SPLIT_ID[self.split], q, _AUG, e, self.epoch])
        if float(aug.uniform()) < self.self_ref_prob:
            from evalkit.data.transforms import self_reference

            s = self.make_sample(i, sc["query_layout"], sc["query_layout"], sc["exemplar_style"],
                                 name, name, query)
            ex, ex_cond, ex_label = self_reference(s.image, s.cond, s.label, aug)
            s.exemplar, s.exemplar_cond, s.exemplar_label, s.self_ref = ex, ex_cond, ex_label, True
            return s
        return self.make_sample(i, sc["query_layout"], sc["exemplar_layout"], sc["exemplar_style"],
                                name, f"{self.name}_{self.split}_{q:05d}_ref{e}", query)


def _factory(condition: str):
    def build(*, root=None, split="test", size=64, n=None, seed=0, **kw) -> ShapesDataset:
        return ShapesDataset(split=split, size=size, n=n, seed=seed, condition=condition, **kw)

    return build


register_dataset("shapes", description="built-in procedural scenes, one-hot labels (K=8 incl. background)",
                 needs_root=False, cond_kind="label")(_factory("label"))
register_dataset("shapes-edge", description="built-in procedural scenes, boundary + distance channels",
                 needs_root=False, cond_kind="channels")(_factory("edge"))
register_dataset("shapes-keypoints", description="built-in procedural scenes, per-class keypoint heat maps",
                 needs_root=False, cond_kind="channels")(_factory("keypoints"))
