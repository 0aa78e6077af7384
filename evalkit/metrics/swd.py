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
from evalkit.images import as_uint8_batch

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GAUSSIAN_5x5 = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    w = kernel.to(x).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), w, groups=c)


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


def sliced_wasserstein_descriptors(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """SWD between two equal-size descriptor sets ``[K, D]`` for ``[R, D, P]`` directions:
    mean over repeats and directions of the mean absolute difference of sorted projections."""
    per_repeat = []
    for dirs in directions:  # one repeat at a time bounds memory to [K, P]
        pa = torch.sort(a @ dirs, dim=0).values
        pb = torch.sort(b @ dirs, dim=0).values
        per_repeat.append(float((pa - pb).abs().mean()))
    return float(np.mean(per_repeat))


VARIANT_INDEPENDENT = "pggan"
VARIANT_SHARED = "pggan-shared-patches"


def swd_variant(shared_patches: bool) -> str:
    """Name recorded in the results table's ``variant`` column."""
    return VARIANT_SHARED if shared_patches else VARIANT_INDEPENDENT


def sliced_wasserstein(images_a, images_b, *, seed: int = 0, shared_patches: bool = False,
                       levels: int | None = None) -> dict[str, float]:
    """SWD x1e3 between two uint8 ``[N, 3, H, W]`` sets of equal N and size.

    ``levels``: the number of pyramid levels (default: from the image size down to 16 px).
    The PGGAN script of the papers' evaluation fixes it at 5, the levels of a 256 x 256 image,
    whatever the images' size (``--protocol cocosnet2020|unite2021|rabit2022``).

    ``shared_patches=False`` (default) is the PGGAN protocol: independent centres per
    neighbourhood, per image and per set. ``True`` shares one draw of centres between the
    two sets (identical sets -> exactly 0; see the module docstring).
    Keys ``SWDx1e3_<res>`` per pyramid level (finest first; ``<res>`` is the level's height)
    and ``SWDx1e3_avg``.
    """
    a = as_uint8_batch(images_a, "SWD generated images")
    b = as_uint8_batch(images_b, "SWD real images")
    if a.shape[0] != b.shape[0]:
        raise EvalkitError(f"SWD needs as many generated as real images, got {a.shape[0]} generated and {b.shape[0]} real; evaluate matching sets")
    if a.shape[2:] != b.shape[2:]:
        raise EvalkitError(f"SWD needs images of one size, got {tuple(a.shape[2:])} generated and {tuple(b.shape[2:])} real")
    n, _, height, width = a.shape
    if levels is None:
        levels = num_levels(height, width)
        if levels == 0:
            raise EvalkitError(f"SWD needs images of at least {MIN_RESOLUTION}px, got {height}x{width}")
    elif min(height, width) < NHOOD_SIZE * 2 ** (levels - 1):
        raise EvalkitError(f"SWD with {levels} pyramid levels needs images of at least "
                           f"{NHOOD_SIZE * 2 ** (levels - 1)} px (a 7x7 neighbourhood on the coarsest), got {height}x{width}")
    gen = torch.Generator().manual_seed(seed)
    pyr_a, pyr_b = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    out = {}
    for la, lb in zip(pyr_a, pyr_b):
        ya, xa = sample_centres(n, la.shape[2], la.shape[3], gen)
        yb, xb = (ya, xa) if shared_patches else sample_centres(n, lb.shape[2], lb.shape[3], gen)
        da = normalise_descriptors(extract_descriptors(la, ya, xa))
        db = normalise_descriptors(extract_descriptors(lb, yb, xb))
        dirs = random_directions(da.shape[1], gen)
        out[f"SWDx1e3_{la.shape[2]}"] = 1e3 * sliced_wasserstein_descriptors(da, db, dirs)
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
