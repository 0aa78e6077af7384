import warnings

import numpy as np
import pandas as pd
from PIL import Image

from evalkit.reports import plots
from report_helpers import rows


def test_metric_bars_are_byte_stable_without_dates(tmp_path):
    res = rows([("a", "shapes", "FID", 10.0, 0), ("a", "shapes", "FID", 12.0, 1), ("b", "shapes", "FID", 8.0, 0),
                ("a", "shapes", "SSIM", 0.5, 0), ("b", "shapes", "SSIM", 0.7, 0)])
    first = plots.metric_bars(res, tmp_path / "one" / "metrics")
    second = plots.metric_bars(res, tmp_path / "two" / "metrics")
    assert [p.name for p in first] == ["metrics.png", "metrics.pdf"]
    for p, q in zip(first, second):
        assert p.read_bytes() == q.read_bytes()
    pdf = first[1].read_bytes()
    assert b"CreationDate" not in pdf and b"Producer" not in pdf
    png = Image.open(first[0])
    assert "Software" not in png.info and png.size[0] > 100


def test_profile_lines(tmp_path):
    prof = pd.DataFrame({"module": ["a", "a", "b", "b"], "resolution": [32, 64, 32, 64],
                         "peak_MiB": [1.0, 4.0, 2.0, 16.0]})
    paths = plots.profile_lines(prof, tmp_path / "memory", x="resolution", y="peak_MiB", hue="module")
    assert all(p.stat().st_size > 0 for p in paths)


def test_metric_bars_label_infinite_cells_without_warnings(tmp_path, monkeypatch):
    """PSNR of outputs identical to their targets is +inf: no bar, an axis label, no numpy warning."""
    res = rows([("copy", "shapes", "PSNR", np.inf, 0), ("a", "shapes", "PSNR", 21.0, 0), ("a", "shapes", "PSNR", 23.0, 1)])
    figures = []
    save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, stem: (figures.append(fig), save(fig, stem))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plots.metric_bars(res, tmp_path / "metrics")
    assert all(p.stat().st_size > 0 for p in paths)
    ax = figures[0].axes[0]
    heights = {t.get_text(): b.get_height() for t, b in zip(ax.get_xticklabels(), ax.patches)}
    assert heights["a"] == 22.0 and np.isnan(heights["copy"])
    assert [t.get_text() for t in ax.texts] == ["+∞"]


def test_metric_bars_draw_references_as_lines_intervals_as_error_bars_and_fit_the_axis(tmp_path, monkeypatch):
    res = rows([("a", "shapes", "SSIM", 0.88, 0), ("b", "shapes", "SSIM", 0.95, 0),
                ("reference/ground-truth", "shapes", "SSIM", 1.0, 0)])
    intervals = pd.DataFrame({"variant": ["a", "b"], "dataset": "shapes", "metric": "SSIM",
                              "ci_low": [0.86, 0.94], "ci_high": [0.90, 0.97]})
    figures = []
    save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, stem: (figures.append(fig), save(fig, stem))[1])
    plots.metric_bars(res, tmp_path / "metrics", intervals=intervals)
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]  # the reference is no bar
    assert [round(line.get_ydata()[0], 6) for line in ax.get_lines() if line.get_linestyle() == "--"] == [1.0]
    low, high = ax.get_ylim()
    assert 0.8 < low < 0.86 and 1.0 < high < 1.05  # 0.88 vs 0.95 is not flattened against 0
    caps = sorted(round(y, 6) for line in ax.get_lines() if line.get_linestyle() != "--" for y in line.get_ydata())
    assert caps[0] == 0.86 and caps[-1] == 0.97
