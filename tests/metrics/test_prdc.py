"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)
against the authors' ``prdc`` package, a hand-computed case, and the ``prdc`` family of the
one-pass evaluation (on the same Inception features as FID)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from evalkit.errors import EvalkitError
from evalkit.features import InceptionFID
from evalkit.metrics import density_coverage, evaluate_arrays, precision_recall
from evalkit.metrics import prdc as prdc_module

NAMES = ("precision", "recall", "density", "coverage")


def _ours(real, fake, k):
    return {**precision_recall(real, fake, k=k), **density_coverage(real, fake, k=k)}


def _gauss(rng, n, d, shift=0.0, scale=1.0):
    return rng.normal(size=(n, d)) * scale + shift


@pytest.mark.parametrize("n,m,d,k", [(200, 150, 16, 1), (200, 150, 16, 3), (120, 300, 64, 5), (40, 40, 2048, 5)])
def test_matches_the_prdc_package(n, m, d, k):
    rng = np.random.default_rng(n + m + d + k)
    real, fake = _gauss(rng, n, d), _gauss(rng, m, d, shift=0.2, scale=1.3)
    ref = compute_prdc(real, fake, nearest_k=k)
    ours = _ours(real, fake, k)
    for name in NAMES:
        assert ours[name] == pytest.approx(float(ref[name]), abs=1e-12), name


def test_float32_inception_sized_features_match_the_prdc_package():
    """float32 features, as the Inception pool gives them (prdc on the same float64 copies)."""
    rng = np.random.default_rng(7)
    real = np.abs(_gauss(rng, 64, 2048)).astype(np.float32)
    fake = np.abs(_gauss(rng, 48, 2048, shift=0.1)).astype(np.float32)
    ref = compute_prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=3)
    for name, value in _ours(real, fake, 3).items():
        assert value == pytest.approx(float(ref[name]), abs=1e-12), name


def test_chunked_distances_give_the_same_numbers(monkeypatch):
    """Chunks of one row (CHUNK_BYTES below one row of distances) = one chunk for all rows."""
    rng = np.random.default_rng(3)
    real, fake = _gauss(rng, 50, 8), _gauss(rng, 37, 8, shift=0.3)
    whole = _ours(real, fake, 3)
    monkeypatch.setattr(prdc_module, "CHUNK_BYTES", 8)
    assert _ours(real, fake, 3) == whole
    assert whole == pytest.approx({k: float(v) for k, v in compute_prdc(real, fake, nearest_k=3).items()}, abs=1e-12)


def test_hand_computed_case():
    """Real points 0, 1, 2, 3 and generated 0.5, 10 on a line (embedded in 2-D), k = 1.
    Real radii: 1 each (nearest neighbour at distance 1); generated radii: 9.5 each.
    precision: 0.5 lies within 1 of 0 (yes), 10 within 1 of no real point -> 1/2.
    recall: every real point lies within 9.5 of 0.5 -> 1.
    density: 0.5 lies in the balls of 0 and 1 (distance 0.5 < 1; 2 is at 1.5), 10 in none
    -> (2 + 0) / (1 * 2) = 1.
    coverage: the nearest generated point of 0 and 1 is 0.5 (0.5 < 1), of 2 and 3 it is at
    1.5 and 2.5 (> 1) -> 2/4."""
    line = lambda xs: np.stack([np.asarray(xs, float), np.zeros(len(xs))], axis=1)  # noqa: E731
    real, fake = line([0, 1, 2, 3]), line([0.5, 10])
    assert precision_recall(real, fake, k=1) == {"precision": 0.5, "recall": 1.0}
    assert density_coverage(real, fake, k=1) == {"density": 1.0, "coverage": 0.5}
    # a generated point exactly on a real sphere is outside (open balls, as prdc): 1.0 is at
    # distance 1 from 0 and 2, their radius; it is inside the ball of 1 only (distance 0)
    assert density_coverage(real, line([1.0, 10]), k=1)["density"] == 0.5


@pytest.mark.parametrize("d,dtype", [(12, np.float64), (2048, np.float32)])
def test_identical_sets_are_fully_precise_and_covered(d, dtype):
    """Generated = real (in another order, float32 like Inception features): every point is
    in its own ball, and each open ball holds itself and its k - 1 nearest neighbours, so
    density = N k / (k N) = 1 exactly; ties on the spheres (the k-th neighbour's copy) are
    outside, decided the same way for the radii and the cross distances."""
    rng = np.random.default_rng(5)
    x = _gauss(rng, 30, d).astype(dtype)
    y = x[rng.permutation(len(x))]
    pr, dc = precision_recall(x, y, k=3), density_coverage(x, y, k=5)
    assert pr == {"precision": 1.0, "recall": 1.0} and dc == {"density": 1.0, "coverage": 1.0}


@pytest.mark.parametrize("real,fake,k,message", [
    (np.zeros((3, 4)), np.zeros((5, 4)), 3, "at least 4 images per set, the real set has 3"),
    (np.zeros((5, 4)), np.zeros((3, 4)), 3, "the generated set has 3"),
    (np.ones((5, 4)), np.ones((5, 3)), 1, "feature sizes differ"),
    (np.ones((5, 4)), np.ones((5, 4)), 0, "k must be an integer >= 1"),
    (np.full((5, 4), np.nan), np.ones((5, 4)), 1, "NaN"),
    (np.ones((5,)), np.ones((5, 4)), 1, "must be [N, D]"),
])
def test_bad_inputs_are_one_error(real, fake, k, message):
    for fn in (precision_recall, density_coverage):
        with pytest.raises(EvalkitError, match=message.replace("[", r"\[").replace("]", r"\]")):
            fn(real, fake, k=k)


class Toy(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_family_rows_are_the_functions_on_the_inception_features(photos, tmp_path):
    """The ``prdc`` family: precision/recall at k = 3, density/coverage at k = 5, on the
    features of the Inception the evaluation built (here a toy network after the 299 px resize)."""
    gen, real = photos(8, 32), photos(7, 32, offset=5)
    net = InceptionFID(network=Toy(), network_id="toy")
    df = evaluate_arrays(gen, real, metrics=["prdc"], cache_dir=tmp_path, backbones={"inception": net})
    rows = df.set_index("metric")
    feats = lambda x: net(torch.from_numpy(x)).numpy()  # noqa: E731
    fa, fb = feats(gen), feats(real)
    ref3, ref5 = compute_prdc(fb.astype(np.float64), fa.astype(np.float64), 3), \
        compute_prdc(fb.astype(np.float64), fa.astype(np.float64), 5)
    assert list(rows.index) == list(NAMES)
    for name, ref, k in (("precision", ref3, 3), ("recall", ref3, 3), ("density", ref5, 5), ("coverage", ref5, 5)):
        assert rows.loc[name, "value"] == pytest.approx(float(ref[name]), abs=1e-12)
        assert rows.loc[name, "variant"] == f"clean-k{k}" and rows.loc[name, "n"] == 8
        assert rows.loc[name, "backbone"] == "toy" and rows.loc[name, "resolution"] == 299


def test_family_applies_only_with_k_plus_one_images_per_set(photos, tmp_path):
    net = InceptionFID(network=Toy(), network_id="toy")
    df = evaluate_arrays(photos(5, 32), photos(8, 32, offset=3), metrics=None, cache_dir=False,
                         backbones={"inception": net}, kid_subset_size=5)
    assert "precision" not in set(df["metric"]) and "FID" in set(df["metric"])
    assert df.attrs["skipped"]["prdc"] == "needs at least 6 images per set (5 generated, 8 real); add images"
    with pytest.raises(EvalkitError, match=r"metric 'prdc' \(precision, recall, density, coverage\) cannot be "
                                           r"computed here: needs at least 6 images"):
        evaluate_arrays(photos(5, 32), photos(8, 32, offset=3), metrics=["prdc"], cache_dir=False,
                        backbones={"inception": net})


def test_family_is_registered_higher_is_better_without_per_item_values():
    from evalkit.metrics import registry
    from evalkit.reports.results import higher_is_better

    assert "prdc" in registry.families() and registry.family_of("coverage") == "prdc"
    assert all(higher_is_better(name) for name in NAMES)
    assert not set(NAMES) & set(registry.claim_rows())
