"""Paired bootstrap for "A beats B" claims over the shared test items.

Both methods are evaluated on the same N test items (same conditional inputs, same
exemplars). One bootstrap replicate draws N item indices with replacement and applies
the *same* indices to A, B (and the real reference set, for set metrics such as FID),
computing ``Δ* = s(A*) − s(B*)``. Pairing removes the between-item variance shared by
both methods, so the interval on Δ is much tighter than two independent intervals.

Reported: the observed Δ = s(A) − s(B), the percentile interval of Δ* at ``confidence``
(Efron & Tibshirani 1993, §13.3), and ``p_better``, the share of replicates in which A
is better than B by the metric's direction. "A beats B" when the whole interval lies on
A's side of 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class BootstrapResult:
    stat_a: float
    stat_b: float
    delta: float          # stat_a - stat_b on the full sample
    ci_low: float
    ci_high: float
    p_better: float       # share of replicates where A is better than B
    confidence: float
    n_items: int
    n_boot: int
    higher_is_better: bool

    @property
    def a_beats_b(self) -> bool:
        """True when the confidence interval of Δ excludes 0 on A's side."""
        return self.ci_low > 0 if self.higher_is_better else self.ci_high < 0

    @property
    def b_beats_a(self) -> bool:
        """True when the confidence interval of Δ excludes 0 on B's side."""
        return self.ci_high < 0 if self.higher_is_better else self.ci_low > 0


def _indexed(statistic: Callable, reference):
    """``values -> (idx -> statistic(values[idx][, reference[idx]]))``; a statistic with a
    ``resampler(values, reference)`` attribute (FID: :func:`evalkit.metrics.fid.fid_resampler`)
    gives its own fast one, equal to the direct computation."""
    if reference is None:
        return lambda x: (lambda i: statistic(x[i]))
    ref = np.asarray(reference)
    make = getattr(statistic, "resampler", None)
    if make is not None:
        return lambda x: make(x, ref)
    return lambda x: (lambda i: statistic(x[i], ref[i]))


def paired_bootstrap(a, b, *, higher_is_better: bool, statistic: Callable | None = None, reference=None,
                     n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> BootstrapResult:
    """Paired bootstrap of ``statistic(A) − statistic(B)`` over shared items.

    a, b: per-item arrays with the items on axis 0 (scores ``[N]`` or features ``[N, D]``);
        row i of ``a``, ``b`` (and ``reference``) belong to the same test item.
    statistic: ``f(x) -> float`` or, with ``reference``, ``f(x, ref) -> float``
        (e.g. ``lambda g, r: fid_from_features(g, r)``); default: the mean.
    reference: per-item reference array resampled with the same indices (real images' features).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] != b.shape[0] or (reference is not None and np.asarray(reference).shape[0] != a.shape[0]):
        raise ValueError("paired bootstrap needs the same items (axis 0) in a, b and reference")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if statistic is None:
        if reference is not None:
            raise ValueError("reference needs a statistic f(x, ref)")
        stat_a, stat_b = float(a.mean(axis=0)), float(b.mean(axis=0))
        deltas = (a[idx] - b[idx]).mean(axis=1)
    else:
        f = _indexed(statistic, reference)
        fa, fb = f(a), f(b)
        full = np.arange(n)
        stat_a, stat_b = float(fa(full)), float(fb(full))
        deltas = np.array([fa(i) - fb(i) for i in idx], dtype=float)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(deltas, [alpha, 1 - alpha])
    better = deltas > 0 if higher_is_better else deltas < 0
    return BootstrapResult(stat_a=stat_a, stat_b=stat_b, delta=stat_a - stat_b, ci_low=float(lo), ci_high=float(hi),
                           p_better=float(better.mean()), confidence=confidence, n_items=n, n_boot=n_boot,
                           higher_is_better=higher_is_better)


def bootstrap_interval(values, *, statistic: Callable | None = None, reference=None, n_boot: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over items resampled with replacement
    (Efron & Tibshirani 1993, §13.3): the one-method counterpart of :func:`paired_bootstrap`,
    with the same draws (``reference`` rows resampled with the same indices)."""
    values = np.asarray(values)
    n = values.shape[0]
    if n < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    if statistic is None:
        stats = values[idx].mean(axis=1)
    else:
        f = _indexed(statistic, reference)(values)
        stats = np.array([f(i) for i in idx])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha], method="inverted_cdf")  # no interpolation: inf stays inf
    return float(lo), float(hi)


CLAIM_COLUMNS = ["dataset", "seed", "metric", "a", "b", "stat_a", "stat_b", "delta", "ci_low", "ci_high", "p_better",
                 "n_items", "verdict"]


def claim_row(dataset: str, seed: int, metric: str, a: str, b: str, res: BootstrapResult) -> dict:
    """One row of a claims table: is ``a`` better than ``b`` on ``metric``? ``"b beats a"`` when the
    interval lies on B's side, ``"not resolved"`` when it contains 0."""
    verdict = f"{a} beats {b}" if res.a_beats_b else f"{b} beats {a}" if res.b_beats_a else "not resolved"
    return {"dataset": dataset, "seed": seed, "metric": metric, "a": a, "b": b, "stat_a": res.stat_a,
            "stat_b": res.stat_b, "delta": res.delta, "ci_low": res.ci_low, "ci_high": res.ci_high,
            "p_better": res.p_better, "n_items": res.n_items, "verdict": verdict}


def claims_markdown(claims) -> str:
    """Markdown table of paired-bootstrap claims (``claims``: DataFrame of :data:`CLAIM_COLUMNS`)."""
    def g(v):
        return f"{v:.3e}" if abs(v) >= 1e6 else f"{v:.4g}"

    lines = ["| dataset | metric | A | B | A | B | Δ = A − B | 95% interval | P(A better) | verdict |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in claims.to_dict("records"):
        lines.append(f"| {r['dataset']} (seed {r['seed']}) | {r['metric']} | {r['a']} | {r['b']} | {g(r['stat_a'])} | "
                     f"{g(r['stat_b'])} | {g(r['delta'])} | [{g(r['ci_low'])}, {g(r['ci_high'])}] | "
                     f"{r['p_better']:.3f} | {r['verdict']} |")
    lines += ["", "Paired bootstrap over the shared test items (same resampled items for A, B and the real "
              "images); A is the leaderboard's best, B the runner-up. \"A beats B\" only when the whole "
              "interval lies on A's side of 0."]
    return "\n".join(lines) + "\n"
