"""Issue 13 item 2 and the small-image inputs: every metric checks its inputs the same way.

NaN or infinite features are refused by FID and KID alike (and by ``frechet_distance`` for
means and covariances), with one EvalkitError naming the set; images smaller than a
family's network or window accepts are one error line when the family is asked for, and a
``note: skipped`` line in "all that apply".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reliability_helpers import cli, image_folder, one_error

from evalkit.errors import EvalkitError
from evalkit.metrics import evaluate_arrays, fid_from_features, frechet_distance, kid_from_features
from evalkit.metrics import registry


def _features(bad=None):
    a = np.random.default_rng(0).normal(size=(8, 4))
    b = np.random.default_rng(1).normal(size=(8, 4))
    if bad is not None:
        a[5, 2] = bad  # row 5: KID's 2 subsets of 4 below do not necessarily draw it; it must be refused anyway
    return a, b


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fid_and_kid_refuse_non_finite_features_naming_the_set(bad):
    a, b = _features(bad)
    with pytest.raises(EvalkitError, match=r"KID: generated set features: \d NaN and \d infinite"):
        kid_from_features(a, b, subsets=2, subset_size=4, names=("generated", "real"))
    with pytest.raises(EvalkitError, match=r"FID: feats_b set features"):
        fid_from_features(b, a, names=("feats_a", "feats_b"))
    # the finite sets still give the published numbers' formulas (sanity: no over-refusal)
    assert np.isfinite(kid_from_features(*_features(), subsets=2, subset_size=4)[0])


def test_frechet_distance_refuses_nan_mean_and_inf_covariance():
    with pytest.raises(EvalkitError, match="FID: first set mean: 1 NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(EvalkitError, match="FID: second set covariance: 0 NaN and 1 infinite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[np.inf, 0.0], [0.0, 1.0]]))
    # closed form for a finite case: ||mu1 - mu2||^2 with equal covariances
    assert frechet_distance(np.array([3.0, 0.0]), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(9.0)


class _NaNInception(torch.nn.Module):
    """An Inception stand-in whose features hold one NaN (a broken weights file)."""

    resize, backbone, weights_id, resolution = "none", "nan-net", "none", 32

    def protocol_key(self):
        return {"name": "nan-net"}

    def forward(self, x):
        f = torch.ones(len(x), 4) * torch.arange(len(x))[:, None]
        f[0, 0] = float("nan")
        return f


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_evaluate_arrays_refuses_nan_features_for_fid_and_kid_alike(metric):
    g = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    r = np.random.default_rng(1).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    with pytest.raises(EvalkitError, match=f"{metric.upper()}: generated set features: 1 NaN"):
        evaluate_arrays(g, r, metrics=[metric], cache_dir=False, backbones={"inception": _NaNInception()},
                        kid_subsets=2, kid_subset_size=4)


def test_min_sizes_are_where_the_networks_stop():
    """Each family's ``min_size`` is the boundary of its own computation: it runs at
    ``min_size`` and the network / window itself fails one pixel below (AlexNet's conv 11/4
    and two 3/2 pools, VGG19's four 2x2 pools before relu5_2, SSIM's 7x7 window)."""
    from evalkit.metrics import lpips_distance, ssim, vgg_consistency

    runs = {"lpips": lambda a: lpips_distance(a, a[::-1].copy(), weights="random"),
            "vgg": lambda a: vgg_consistency(a, a, a, weights="random"),
            "ssim": lambda a: ssim(a, a[::-1].copy())}
    for family, run in runs.items():
        side = registry.spec(family).min_size
        at = np.random.default_rng(0).integers(0, 256, (2, 3, side, side), dtype=np.uint8)
        below = at[:, :, :-1, :-1].copy()
        out = run(at)
        values = list(out.values()) if isinstance(out, dict) else np.ravel(np.asarray(out, dtype=float))
        assert np.all(np.isfinite(np.asarray(values, dtype=float))), (family, out)
        with pytest.raises((RuntimeError, ValueError)):
            run(below)
    assert registry.spec("lpips-diversity").min_size == registry.spec("lpips").min_size
    assert registry.spec("swd").min_size == 16  # the pyramid's smallest level (Karras et al. 2018)


@pytest.mark.parametrize("metric, size, needs", [("ssim", 6, "7x7"), ("lpips", 16, "31x31"), ("vgg", 8, "16x16")])
def test_small_images_are_one_error_line_when_asked_for(tmp_path, metric, size, needs):
    g = image_folder(tmp_path / "g", size=size, seed=1)
    r = image_folder(tmp_path / "r", size=size, seed=2)
    extra = ["--exemplars", r] if metric == "vgg" else []
    result = cli("evaluate", "--generated", g, "--real", r, "--metrics", metric, "--weights", "random",
                 "--no-cache", *extra, "--out", tmp_path / "rows.csv")
    one_error(result, f"needs images of at least {needs} px", f"smallest side here is {size} px")
    assert not (tmp_path / "rows.csv").exists()


def test_small_images_are_skipped_with_a_note_in_all_that_apply(tmp_path):
    g = image_folder(tmp_path / "g", size=8, seed=1)
    r = image_folder(tmp_path / "r", size=8, seed=2)
    result = cli("evaluate", "--generated", g, "--real", r, "--weights", "random", "--no-cache", "--json")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: skipped")]
    for family in ("swd", "lpips", "vgg"):
        assert any(family in n and "at least" in n for n in notes), (family, notes)
    assert not any("ssim" in n for n in notes)  # 8 px is enough for SSIM's window
