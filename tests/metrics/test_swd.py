"""SWD against a NumPy re-statement of the PGGAN reference (metrics/sliced_wasserstein.py),
fed the same patch centres and directions (replayed from the seeded generator), in both
the default PGGAN mode (independent centres per set) and the shared-patches variant."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage
import torch

from evalkit.errors import EvalkitError
from evalkit.metrics import sliced_wasserstein
from evalkit.metrics.swd import laplacian_pyramid, num_levels, pyr_down, random_directions, sample_centres

GAUSS = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def ref_pyr_down(mb):
    return scipy.ndimage.convolve(mb, GAUSS[np.newaxis, np.newaxis, :, :], mode="mirror")[:, :, ::2, ::2]


def ref_pyr_up(mb):
    s = mb.shape
    res = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), mb.dtype)
    res[:, :, ::2, ::2] = mb
    return scipy.ndimage.convolve(res, GAUSS[np.newaxis, np.newaxis, :, :] * 4.0, mode="mirror")


def ref_pyramid(mb, levels):
    pyramid = [np.float32(mb)]
    for _ in range(1, levels):
        pyramid.append(ref_pyr_down(pyramid[-1]))
        pyramid[-2] -= ref_pyr_up(pyramid[-1])
    return pyramid


def ref_descriptors(mb, ys, xs, per_image=128, size=7):
    """PGGAN's get_descriptors_for_minibatch with the random centres passed in."""
    s = mb.shape
    n = ys.shape[0]
    h = size // 2
    nhood, chan, x, y = np.ogrid[0:n, 0:3, -h:h + 1, -h:h + 1]
    img = nhood // per_image
    x = x + xs.reshape(n, 1, 1, 1)
    y = y + ys.reshape(n, 1, 1, 1)
    idx = ((img * s[1] + chan) * s[2] + y) * s[3] + x
    return mb.flat[idx]


def ref_finalize(desc):
    desc = desc - np.mean(desc, axis=(0, 2, 3), keepdims=True)
    desc /= np.std(desc, axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def ref_swd(a, b, dirs_per_repeat):
    results = []
    for dirs in dirs_per_repeat:
        pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    return np.mean(results)


def test_pyr_down_matches_opencv(photos):
    x = photos(2, 64).astype(np.float32)
    ours = pyr_down(torch.from_numpy(x)).numpy()
    cv = np.stack([np.stack([cv2.pyrDown(ch) for ch in im]) for im in x])
    np.testing.assert_allclose(ours, cv, atol=1e-3)


def _reference_with_replayed_draws(a, b, seed, shared):
    """The NumPy reference fed the centres and directions our generator draws, in our
    order (per level: centres of A, centres of B unless shared, directions)."""
    levels = num_levels(a.shape[2], a.shape[3])
    gen = torch.Generator().manual_seed(seed)
    pa, pb = ref_pyramid(a.astype(np.float32), levels), ref_pyramid(b.astype(np.float32), levels)
    expected = {}
    for la, lb in zip(pa, pb):
        ya, xa = sample_centres(a.shape[0], la.shape[2], la.shape[3], gen)
        yb, xb = (ya, xa) if shared else sample_centres(b.shape[0], lb.shape[2], lb.shape[3], gen)
        da = ref_finalize(ref_descriptors(la, ya.numpy(), xa.numpy()))
        db = ref_finalize(ref_descriptors(lb, yb.numpy(), xb.numpy()))
        dirs = random_directions(da.shape[1], gen).numpy()
        expected[f"SWDx1e3_{la.shape[2]}"] = 1e3 * ref_swd(da, db, dirs)
    expected["SWDx1e3_avg"] = np.mean(list(expected.values()))
    return expected


@pytest.mark.parametrize("shared", [False, True], ids=["independent", "shared"])
def test_swd_matches_numpy_pggan_reference(photos, shared):
    a, b = photos(6, 64), photos(6, 64, offset=5)
    ours = sliced_wasserstein(a, b, seed=3, shared_patches=shared)
    assert num_levels(64, 64) == 3 and set(ours) == {"SWDx1e3_64", "SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"}
    np.testing.assert_allclose(laplacian_pyramid(torch.from_numpy(a), 3)[1].numpy(),
                               ref_pyramid(a.astype(np.float32), 3)[1], atol=1e-3)
    expected = _reference_with_replayed_draws(a, b, 3, shared)
    for k, v in expected.items():
        assert ours[k] == pytest.approx(v, rel=1e-4), k
    assert ours["SWDx1e3_avg"] > 1.0


def test_swd_default_draws_centres_independently_per_set(photos):
    """Default = PGGAN: B's centres are not A's. Fed A's centres for both sets, the
    reference gives a different number from ours, and identical sets are not exactly 0."""
    a, b = photos(6, 64), photos(6, 64, offset=5)
    ours = sliced_wasserstein(a, b, seed=3)
    shared_ref = _reference_with_replayed_draws(a, b, 3, shared=True)
    assert ours["SWDx1e3_64"] != pytest.approx(shared_ref["SWDx1e3_64"], rel=1e-4)
    same = sliced_wasserstein(a, a.copy(), seed=3)
    assert same == sliced_wasserstein(a, a.copy(), seed=3)  # seeded: deterministic
    assert same != sliced_wasserstein(a, a.copy(), seed=4)
    assert all(v > 0 for v in same.values()) and same["SWDx1e3_avg"] < ours["SWDx1e3_avg"]


def test_swd_identical_sets_give_sampling_noise_that_shrinks_as_one_over_sqrt_n(photos):
    """Independent centres: SWD(A, A) is only patch-sampling noise, O(1/sqrt(#patches)):
    4x the images -> about half the value (not a fixed offset, not 0)."""
    small, large = photos(4, 32), photos(16, 32)
    noise_small = sliced_wasserstein(small, small.copy())["SWDx1e3_avg"]
    noise_large = sliced_wasserstein(large, large.copy())["SWDx1e3_avg"]
    assert noise_large > 0 and 0.3 < noise_large / noise_small < 0.7


def test_swd_identical_sets_is_zero_when_patches_shared_and_seeded(photos):
    a = photos(4, 32)
    assert all(v == 0.0 for v in sliced_wasserstein(a, a.copy(), shared_patches=True).values())
    b = photos(4, 32, offset=7)
    assert sliced_wasserstein(a, b, seed=1) == sliced_wasserstein(torch.from_numpy(a), torch.from_numpy(b), seed=1)


def test_swd_centres_are_independent_per_neighbourhood():
    ys, xs = sample_centres(4, 32, 32, torch.Generator().manual_seed(0))
    assert ys.shape == (512,) and len(set(zip(ys.tolist(), xs.tolist()))) > 300  # not one shared grid
    assert ys.min() >= 3 and ys.max() <= 28


def test_swd_count_mismatch_is_an_error(photos):
    with pytest.raises(EvalkitError, match="as many generated as real"):
        sliced_wasserstein(photos(3, 32), photos(4, 32))
