import numpy as np
import pytest
from scipy import stats

from evalkit.reports.bootstrap import paired_bootstrap


def test_mean_difference_interval_matches_scipy_and_normal_theory():
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 5, 400)  # large per-item variance shared by both methods
    a = shared + rng.normal(0.0, 0.5, 400)
    b = shared + rng.normal(0.3, 0.5, 400)  # B is worse for a lower-is-better score
    res = paired_bootstrap(a, b, higher_is_better=False, n_boot=4000, seed=0)
    d = a - b
    assert np.isclose(res.delta, d.mean())
    ref = stats.bootstrap((d,), np.mean, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert abs(res.ci_low - ref.low) < 0.25 * half and abs(res.ci_high - ref.high) < 0.25 * half
    assert abs((res.ci_high - res.ci_low) - 2 * half) < 0.2 * half
    assert res.a_beats_b and res.p_better > 0.99
    # The unpaired interval would not separate them: the pairing is what makes the claim.
    assert 1.96 * np.sqrt(a.var(ddof=1) / 400 + b.var(ddof=1) / 400) > abs(d.mean())


def test_set_statistic_with_reference_resamples_the_same_items():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (60, 3))
    a, b = real + 0.01, real + 1.0

    def dist(x, r):  # squared distance between means: 0 for A up to the shift
        return float(((x.mean(0) - r.mean(0)) ** 2).sum())

    res = paired_bootstrap(a, b, higher_is_better=False, statistic=dist, reference=real, n_boot=200)
    # With the same indices for generated and real, the statistics are constant: 3·0.01² and 3·1².
    assert np.isclose(res.stat_a, 3e-4) and np.isclose(res.stat_b, 3.0)
    assert np.isclose(res.ci_low, 3e-4 - 3.0) and np.isclose(res.ci_high, 3e-4 - 3.0)
    assert res.a_beats_b


def test_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(np.zeros(3), np.zeros(4), higher_is_better=True)


def test_verdict_names_the_winner_on_either_side_or_says_not_resolved():
    from evalkit.reports.bootstrap import claim_row

    rng = np.random.default_rng(2)
    shared = rng.normal(0, 5, 200)
    worse, better = shared + 1.0, shared + rng.normal(0, 0.1, 200)  # higher is better: "worse" is +1 everywhere
    res = paired_bootstrap(better, worse, higher_is_better=True, n_boot=500)
    assert res.ci_high < 0 and res.b_beats_a and not res.a_beats_b  # the whole interval is on B's side
    assert claim_row("d", 0, "PSNR", "m", "copy", res)["verdict"] == "copy beats m"
    tie = paired_bootstrap(shared + rng.normal(0, 1, 200), shared + rng.normal(0, 1, 200), higher_is_better=True,
                           n_boot=500)
    assert tie.ci_low < 0 < tie.ci_high and claim_row("d", 0, "PSNR", "m", "copy", tie)["verdict"] == "not resolved"


def test_fid_resampler_is_the_direct_fid_of_each_resample_and_the_bootstrap_uses_it():
    """The Gram-block FID of a resample (evalkit.metrics.fid.fid_resampler) equals
    fid_from_features on the resampled rows (few items in many dimensions, and more items than
    dimensions), so the bootstrap's fast path gives the interval of the direct statistic."""
    from evalkit.metrics.fid import fid_from_features, fid_resampler
    from evalkit.reports.bootstrap import bootstrap_interval

    rng = np.random.default_rng(3)
    for n, d in ((24, 256), (40, 8)):
        real = rng.normal(0, 1, (n, d))
        gen = 0.8 * real + rng.normal(0.2, 0.6, (n, d))
        fast = fid_resampler(gen, real)
        for idx in rng.integers(0, n, (20, n)):
            assert fast(idx) == pytest.approx(fid_from_features(gen[idx], real[idx]), rel=1e-10)

        def direct(x, r):  # the same statistic without the fast path
            return fid_from_features(x, r)

        got = bootstrap_interval(gen, statistic=fid_from_features, reference=real, n_boot=50, seed=1)
        want = bootstrap_interval(gen, statistic=direct, reference=real, n_boot=50, seed=1)
        assert got == pytest.approx(want, rel=1e-10)
