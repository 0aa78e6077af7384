"""Re-check of the README's claim about clean-fid at small n (opt-in benchmark, slow:
``scipy.linalg.sqrtm`` of a 2048 x 2048 product is seconds to minutes on a shared CPU)::

    .venv/bin/python -m pytest tests/benchmarks/bench_cleanfid_claim.py -q -s

clean-fid's FID (``cleanfid.fid.frechet_distance``: ``scipy.linalg.sqrtm`` of S_a S_b) on
16 images of 2048-d features, where both covariances are rank-deficient, against
evalkit's exact form (the nuclear norm of the centred cross product, README "FID"). The
README used to say clean-fid "fails with 'Imaginary component' at 16 images"; with SciPy
1.17.1 it returns a real value within 1e-5 (relative) of evalkit's. Both are timed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest


@pytest.mark.parametrize("n", [16])
def test_cleanfid_sqrtm_at_small_n_is_real_and_close_to_the_exact_value(n):
    import scipy
    from cleanfid.fid import frechet_distance

    from evalkit.metrics import fid_from_features

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, 2048)), rng.standard_normal((n, 2048)) + 0.1
    t0 = time.perf_counter()
    theirs = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    t1 = time.perf_counter()
    ours = fid_from_features(a, b)
    t2 = time.perf_counter()
    print(f"\nscipy {scipy.__version__}, n={n}: clean-fid {theirs:.6f} in {t1 - t0:.2f} s; "
          f"evalkit {ours:.6f} in {t2 - t1:.4f} s")
    assert np.isrealobj(theirs) and theirs == pytest.approx(ours, rel=1e-5)
