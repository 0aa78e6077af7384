"""Sliced Wasserstein Distance on Laplacian-pyramid patches (Karras et al., ICLR 2018,
"Progressive Growing of GANs", Sec. 5 and App. D; reference ``metrics/sliced_wasserstein.py``).

Protocol, as the reference:

1. Laplacian pyramid of the float images (0..255): 5x5 binomial filter ``[1 4 6 4 1]^T
   [1 4 6 4 1] / 256`` with mirror padding (``scipy.ndimage`` 'mirror' = torch 'reflect'),
   ``down = blur(x)[::2, ::2]``, ``up = blur4(zero-insert(x))``, level_i = g_i - up(g_{i+1}),
   last level = the coarsest Gaussian; levels from the image size down to 16 px.
2. Per level, 128 random 7x7 neighbourhoods per image, each with its own centre
   (``y, x`` uniform in ``[3, size - 3)``), giving descriptors of 3 * 7 * 7 = 147 values.
3. Descriptors normalised per set and per channel (mean 0, std 1 over all descriptors and
   the 7x7 positions).
4. SWD = mean over 4 repeats of mean_k |sort(A d_k) - sort(B d_k)| for 128 random
   L2-normalised directions d_k; reported x1e3 per level and averaged over levels.

Centres (``shared_patches``):

- ``False`` (default, variant ``pggan``): the reference exactly. Every neighbourhood of every
  image of *each set* gets its own centre, drawn independently for set A and for set B
  (the reference calls ``np.random.randint`` once per minibatch it feeds). SWD is then a
  two-sample statistic: identical sets give a small positive value (patch sampling noise),
  not 0.
- ``True`` (variant ``pggan-shared-patches``): one draw of centres per level, used for both
  sets (common random numbers). Each set's descriptors have the same distribution as in
  the reference, but identical sets give exactly 0 and the paired variance is lower. Not
  the published protocol: use it for regression checks between two versions of a method,
  never to compare with published numbers.

Random draws, in order, from one ``torch.Generator`` seeded with ``seed``: per level,
centres of A, centres of B (unless shared), then the ``[4, D, 128]`` directions. Both sets
must hold the same number of images (sorted projections are compared element-wise).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GAUSSIAN_5x5 = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 5x5 ``kernel`` with mirror padding; channels_last, where oneDNN's depthwise
    kernel runs (about 5x the contiguous layout's speed on CPU, the same values)."""
    c = x.shape[1]
    w = kernel.to(x).expand(c, 1, 5, 5)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect").contiguous(memory_format=torch.channels_last)
    return F.conv2d(padded, w, groups=c)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x, GAUSSIAN_5x5)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, GAUSSIAN_5x5 * 4.0)


def num_levels(height: int, width: int) -> int:
    res, levels = min(height, width), 0
    while res >= MIN_RESOLUTION:
        levels += 1
        res //= 2
    return levels


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Float ``[N, C, H, W]`` -> ``levels`` band-pass images (finest first)."""
    pyramid = [x.float()]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])[:, :, : pyramid[-2].shape[2], : pyramid[-2].shape[3]]
    return pyramid


def sample_centres(n_images: int, height: int, width: int, generator: torch.Generator,
                   per_image: int = NHOODS_PER_IMAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent neighbourhood centres ``(y, x)``, each ``[n_images * per_image]``."""
    h = NHOOD_SIZE // 2
    xs = torch.randint(h, width - h, (n_images * per_image,), generator=generator)
    ys = torch.randint(h, height - h, (n_images * per_image,), generator=generator)
    return ys, xs


def extract_descriptors(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                        per_image: int = NHOODS_PER_IMAGE) -> torch.Tensor:
    """``[N * per_image, C, 7, 7]`` neighbourhoods of ``level`` at the given centres
    (neighbourhood ``k`` comes from image ``k // per_image``), laid out ``[C, x, y]`` as the
    reference's ``np.ogrid[0:N, 0:3, -H:H+1, -H:H+1]`` indexing does."""
    h = NHOOD_SIZE // 2
    off = torch.arange(-h, h + 1)
    img = torch.arange(ys.numel()) // per_image
    yy = (ys[:, None] + off)[:, :, None]  # [K, 7, 1]
    xx = (xs[:, None] + off)[:, None, :]  # [K, 1, 7]
    patches = level[img[:, None, None], :, yy, xx]  # [K, 7 (y), 7 (x), C]
    return patches.permute(0, 3, 2, 1)  # [K, C, x, y]: the reference's ogrid order (x before y)


def normalise_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation over descriptors and positions; flatten to ``[K, C*49]``."""
    desc = desc.double()
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    desc = desc / desc.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return desc.reshape(desc.shape[0], -1)


def random_directions(dim: int, generator: torch.Generator) -> torch.Tensor:
    """``[DIR_REPEATS, dim, DIRS_PER_REPEAT]`` unit-norm projection directions."""
    d = torch.randn(DIR_REPEATS, dim, DIRS_PER_REPEAT, generator=generator, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def sorted_projections(projections: torch.Tensor) -> np.ndarray:
    """``[P, K]``: each column of the ``[K, P]`` projections, sorted (numpy's SIMD sort along
    contiguous rows: 5-8x torch's CPU sort along a strided dimension, the same values)."""
    rows = np.ascontiguousarray(projections.numpy().T)
    rows.sort(axis=1)
    return rows


def sliced_wasserstein_descriptors(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """SWD between two equal-size descriptor sets ``[K, D]`` for ``[R, D, P]`` directions:
    mean over repeats and directions of the mean absolute difference of sorted projections."""
    per_repeat = []
    for dirs in directions:  # one repeat at a time bounds memory to [K, P]
        pa, pb = sorted_projections(a @ dirs), sorted_projections(b @ dirs)
        per_repeat.append(float(np.abs(pa - pb).mean()))
    return float(np.mean(per_repeat))


VARIANT_INDEPENDENT = "pggan"
VARIANT_SHARED = "pggan-shared-patches"


def swd_variant(shared_patches: bool) -> str:
    """Name recorded in the results table's ``variant`` column."""
    return VARIANT_SHARED if shared_patches else VARIANT_INDEPENDENT


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """``(H, W)`` of each pyramid level, finest first (``pyr_down`` keeps ``ceil(side / 2)``)."""
    sizes = [(height, width)]
    for _ in range(1, levels):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes


class _Rows:
    """Float32 rows appended chunk by chunk: in memory up to ``budget`` bytes, then spilled to
    an anonymous temporary file (read back ``read_bytes`` at a time), so that a set's
    descriptors never need O(N) memory."""

    def __init__(self, budget: int, read_bytes: int = 16 * 2 ** 20):
        self.budget, self.read_bytes = budget, read_bytes
        self.chunks: list[np.ndarray] = []
        self.file = None
        self.rows, self.width, self.size = 0, 0, 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        self.rows, self.width, self.size = self.rows + len(rows), rows.shape[1], self.size + rows.nbytes
        if self.file is None and self.size > self.budget:
            import tempfile

            self.file = tempfile.TemporaryFile(prefix="evalkit-swd-")
            for chunk in self.chunks:
                chunk.tofile(self.file)
            self.chunks = []
        if self.file is None:
            self.chunks.append(rows)
        else:
            rows.tofile(self.file)

    @property
    def in_memory(self) -> bool:
        return self.file is None

    def __iter__(self):
        if self.file is None:
            yield from self.chunks
            return
        step = max(1, self.read_bytes // (4 * self.width))
        self.file.seek(0)
        for start in range(0, self.rows, step):
            count = min(step, self.rows - start)
            yield np.fromfile(self.file, dtype=np.float32, count=count * self.width).reshape(count, self.width)


def _descriptor_rows(images, levels: int, centres: list, budget: int, batch: int) -> list[_Rows]:
    """Raw float32 descriptors ``[K, C * 49]`` of every level of ``images`` (an ImageStack),
    ``batch`` images at a time: each batch's pyramid, then its neighbourhoods at ``centres``."""
    out = [_Rows(budget) for _ in range(levels)]
    for idx, x in images.batches(batch):
        rows = slice(idx[0] * NHOODS_PER_IMAGE, (idx[-1] + 1) * NHOODS_PER_IMAGE)
        for store, level, (ys, xs) in zip(out, laplacian_pyramid(x, levels), centres):
            desc = extract_descriptors(level, ys[rows].long(), xs[rows].long())
            store.append(desc.reshape(desc.shape[0], -1).numpy())
    return out


def _normaliser(rows: _Rows, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (population) over every descriptor and position, in float64
    (two passes, as :func:`normalise_descriptors` computes them)."""
    count = rows.rows * (rows.width // channels)
    total = sum(c.reshape(len(c), channels, -1).sum(axis=(0, 2), dtype=np.float64) for c in rows)
    mean = total / count
    sq = sum(((c.reshape(len(c), channels, -1) - mean[None, :, None]) ** 2).sum(axis=(0, 2)) for c in rows)
    return mean, np.sqrt(sq / count)


def _streamed_swd(a: _Rows, b: _Rows, directions: torch.Tensor, channels: int, proj_bytes: int) -> float:
    """:func:`sliced_wasserstein_descriptors` of the normalised rows of ``a`` and ``b`` with
    at most ``proj_bytes`` of projections in memory: directions a few at a time, rows chunk
    by chunk (equal to the in-memory path to rounding)."""
    norms = [_normaliser(r, channels) for r in (a, b)]

    def project(rows: _Rows, norm, dirs: torch.Tensor) -> np.ndarray:
        mean, std = (torch.from_numpy(v)[None, :, None] for v in norm)
        parts = [((torch.from_numpy(c).double().reshape(len(c), channels, -1) - mean) / std).reshape(len(c), -1) @ dirs
                 for c in rows]
        return sorted_projections(torch.cat(parts))

    per_dir = max(1, min(directions.shape[2], proj_bytes // (8 * 2 * max(a.rows, 1))))
    per_repeat = []
    for dirs in directions:
        total = 0.0
        for start in range(0, dirs.shape[1], per_dir):
            d = dirs[:, start:start + per_dir]
            total += float(np.abs(project(a, norms[0], d) - project(b, norms[1], d)).sum())
        per_repeat.append(total / (a.rows * dirs.shape[1]))
    return float(np.mean(per_repeat))


SPILL_BYTES = 32 * 2 ** 20  # descriptors of one level of one set held in memory up to this; beyond, on disk
PROJECTION_BYTES = 64 * 2 ** 20  # sorted projections of both sets in memory at a time (streamed path)


def sliced_wasserstein(images_a, images_b, *, seed: int = 0, shared_patches: bool = False,
                       levels: int | None = None, batch: int = 32, spill_bytes: int = SPILL_BYTES,
                       projection_bytes: int = PROJECTION_BYTES) -> dict[str, float]:
    """SWD x1e3 between two uint8 ``[N, 3, H, W]`` sets (arrays or
    :class:`~evalkit.image_stack.ImageStack` s) of equal N and size.

    ``levels``: the number of pyramid levels (default: from the image size down to 16 px).
    The PGGAN script of the papers' evaluation fixes it at 5, the levels of a 256 x 256 image,
    whatever the images' size (``--protocol cocosnet2020|unite2021|rabit2022``).

    ``shared_patches=False`` (default) is the PGGAN protocol: independent centres per
    neighbourhood, per image and per set. ``True`` shares one draw of centres between the
    two sets (identical sets -> exactly 0; see the module docstring).
    Keys ``SWDx1e3_<res>`` per pyramid level (finest first; ``<res>`` is the level's height)
    and ``SWDx1e3_avg``.

    Memory is bounded at any N: images go through the pyramid ``batch`` at a time; a level's
    descriptors beyond ``spill_bytes`` per set wait in a temporary file, and their projections
    are then sorted a few directions at a time (``projection_bytes``). Below these sizes the
    arithmetic is the in-memory one; beyond, equal to it to rounding (``tests/metrics/test_swd.py``).
    """
    from evalkit.image_stack import as_stack

    a, b = as_stack(images_a, "SWD generated images"), as_stack(images_b, "SWD real images")
    if len(a) != len(b):
        raise EvalkitError(f"SWD needs as many generated as real images, got {len(a)} generated and {len(b)} real; evaluate matching sets")
    if not (a.one_size and b.one_size) or a.shape[2:] != b.shape[2:]:
        sizes = [tuple(s.shape[2:]) if s.one_size else "mixed sizes" for s in (a, b)]
        raise EvalkitError(f"SWD needs images of one size, got {sizes[0]} generated and {sizes[1]} real")
    n, channels, height, width = a.shape
    if levels is None:
        levels = num_levels(height, width)
        if levels == 0:
            raise EvalkitError(f"SWD needs images of at least {MIN_RESOLUTION}px, got {height}x{width}")
    elif min(height, width) < NHOOD_SIZE * 2 ** (levels - 1):
        raise EvalkitError(f"SWD with {levels} pyramid levels needs images of at least "
                           f"{NHOOD_SIZE * 2 ** (levels - 1)} px (a 7x7 neighbourhood on the coarsest), got {height}x{width}")
    gen = torch.Generator().manual_seed(seed)
    draws = []  # per level, in the order of the module docstring: centres of A, of B, directions
    small = torch.int16 if max(height, width) < 2 ** 15 else torch.int32  # N x 128 centres per level: kept small

    def centres(lh: int, lw: int) -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = sample_centres(n, lh, lw, gen)
        return ys.to(small), xs.to(small)

    for lh, lw in level_sizes(height, width, levels):
        ca = centres(lh, lw)
        cb = ca if shared_patches else centres(lh, lw)
        draws.append((lh, ca, cb, random_directions(channels * NHOOD_SIZE ** 2, gen)))
    rows_a = _descriptor_rows(a, levels, [d[1] for d in draws], spill_bytes, batch)
    rows_b = _descriptor_rows(b, levels, [d[2] for d in draws], spill_bytes, batch)
    out = {}
    for (lh, _, _, dirs), ra, rb in zip(draws, rows_a, rows_b):
        if ra.in_memory and rb.in_memory and 8 * 2 * ra.rows * dirs.shape[2] <= projection_bytes:
            da, db = (normalise_descriptors(torch.from_numpy(np.concatenate(list(r))).reshape(r.rows, channels,
                                                                                              NHOOD_SIZE, NHOOD_SIZE))
                      for r in (ra, rb))
            value = sliced_wasserstein_descriptors(da, db, dirs)
        else:
            value = _streamed_swd(ra, rb, dirs, channels, projection_bytes)
        out[f"SWDx1e3_{lh}"] = 1e3 * value
    out["SWDx1e3_avg"] = float(np.mean(list(out.values())))
    return out


# -- the ``swd`` family (evalkit.metrics.registry) ------------------------------------------
def _swd_compute(ctx) -> list[dict]:
    from evalkit.features import FeatureCache, pair_key

    from evalkit import protocols

    inp, o = ctx.inputs, ctx.options
    real = inp.paired_real if inp.pairs is not None else inp.real
    real_hash = [inp.real_hash[j] for j in inp.pairs] if inp.pairs is not None else inp.real_hash
    variant = swd_variant(o.swd_shared_patches)
    levels = protocols.get(o.protocol).swd_levels  # the papers' script: 5, whatever the size
    ns = FeatureCache.namespace(backbone="swd-" + variant, seed=o.seed,
                                **({} if levels is None else {"levels": levels}))
    key = pair_key(*inp.gen_hash, "|", *real_hash)
    advance = ctx.bars.task("SWD", 1)
    cached = ctx.cache.get(ns, key)
    if cached is None:
        swd = sliced_wasserstein(inp.generated, real, seed=o.seed, shared_patches=o.swd_shared_patches, levels=levels)
        cached = np.array([[int(k.split("_")[1]) if k != "SWDx1e3_avg" else -1, v] for k, v in swd.items()])
        ctx.cache.put(ns, key, cached)
    advance()
    return [ctx.row("SWD" if level < 0 else f"SWD@{int(level)}", variant, value, ctx.n, ctx.protocol())
            for level, value in cached]


def _register() -> None:
    from evalkit.metrics.registry import MetricSpec, RowSpec, register_metric

    register_metric(MetricSpec("swd", rows=(RowSpec("SWD", higher_is_better=False, decimals=2, levels=True),),
                               compute=_swd_compute, needs=("equal-sets",), order=30, min_size=16))


_register()
