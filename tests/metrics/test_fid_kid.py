"""FID and KID against clean-fid (the reference implementation) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cleanfid import fid as cfid

from evalkit.errors import EvalkitError
from evalkit.features import InceptionFID
from evalkit.metrics import evaluate_folders, fid_from_features, frechet_distance, kid_from_features
from evalkit.metrics.kid import kid_subsets


def _gauss(rng, n, d, shift=0.0, scale=1.0):
    mix = rng.normal(size=(d, d)) * scale / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def test_frechet_distance_matches_cleanfid():
    rng = np.random.default_rng(0)
    a, b = _gauss(rng, 400, 64), _gauss(rng, 300, 64, shift=0.3, scale=1.5)
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ours, ref = frechet_distance(*args), cfid.frechet_distance(*args)
    assert abs(ours - ref) / ref <= 1e-6


def test_frechet_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(1)
    s = np.cov(_gauss(rng, 200, 32), rowvar=False)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-9, abs=1e-9)
    assert frechet_distance(mu1, s, mu1, s) == pytest.approx(0.0, abs=1e-8)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(2)
    va, vb = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(va), mu2, np.diag(vb)) == pytest.approx(expected, rel=1e-10)


def test_fid_from_features_matches_cleanfid_when_n_exceeds_d():
    rng = np.random.default_rng(3)
    a, b = _gauss(rng, 300, 48), _gauss(rng, 250, 48, shift=0.2)
    ref = cfid.fid_from_feats(a, b)
    assert abs(fid_from_features(a, b) - ref) / ref <= 1e-6


def test_fid_n_below_d_is_finite_and_exact():
    """N < D: the nuclear-norm path must equal the eigenvalue path on the (singular)
    covariances, and be real and finite (scipy sqrtm gives complex garbage here)."""
    rng = np.random.default_rng(4)
    a, b = _gauss(rng, 20, 256), _gauss(rng, 30, 256, shift=0.5)
    value = fid_from_features(a, b)
    via_cov = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(via_cov, rel=1e-6)  # eigh path: sqrt of ~1e-14 null-space eigenvalues
    assert fid_from_features(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-7)


def test_fid_needs_two_images():
    with pytest.raises(EvalkitError, match="at least 2"):
        fid_from_features(np.ones((1, 8)), np.ones((5, 8)))


@pytest.mark.parametrize("n_a,n_b,subset_size", [(60, 50, 1000), (80, 90, 25)])
def test_kid_matches_cleanfid_on_same_subsets(n_a, n_b, subset_size):
    rng = np.random.default_rng(5)
    a, b = _gauss(rng, n_a, 32), _gauss(rng, n_b, 32, shift=0.3)
    mean, std = kid_from_features(a, b, subsets=20, subset_size=subset_size, seed=7)
    np.random.seed(7)  # clean-fid draws from the global NumPy RNG
    ref = cfid.kernel_distance(a, b, num_subsets=20, max_subset_size=subset_size)
    assert mean == pytest.approx(ref, rel=1e-10, abs=1e-12)
    # std over subsets (torch-fidelity reports np.std of the per-subset MMD²), restated here
    per = []
    d = a.shape[1]
    for ia, ib in kid_subsets(n_a, n_b, subsets=20, subset_size=subset_size, seed=7):
        x, y = a[ia], b[ib]
        m = len(ia)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        per.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
        assert m == min(n_a, n_b, subset_size)
    assert std == pytest.approx(np.std(per), rel=1e-9)


class ToyExtractor(torch.nn.Module):
    """Cheap stand-in for Inception: 2x2 average pool of the 299 px input (12-d)."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_whole_pipeline_fid_matches_cleanfid_compute_fid(photos, write_folder, tmp_path):
    gen, real = photos(16, 48), photos(16, 48, offset=9)
    gdir, rdir = write_folder(tmp_path / "gen", gen), write_folder(tmp_path / "real", real)
    toy = ToyExtractor()
    ref = cfid.compute_fid(str(gdir), str(rdir), mode="clean", custom_feat_extractor=toy, num_workers=0,
                           batch_size=8, device=torch.device("cpu"), verbose=False)
    df = evaluate_folders(gdir, rdir, metrics=["fid"], cache_dir=False, progress=False,
                          backbones={"inception": InceptionFID(network=toy, network_id="toy-pool2")})
    ours = df.set_index("metric").loc["FID", "value"]
    assert ref > 1.0
    assert abs(ours - ref) / ref <= 1e-4  # resize: float64 torch bicubic-aa vs PIL float32, ~2e-5 per pixel
    assert df.set_index("metric").loc["FID", "resize"] == "clean-pil-bicubic"
