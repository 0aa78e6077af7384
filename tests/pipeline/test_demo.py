"""`evalkit demo` through the CLI, shrunk (2 steps, 8 training / 6 test samples): every part of
its report exists, and its claims against the exemplar copy are the per-item PSNR differences
recomputed here from the images it wrote (skimage), not numbers it merely states."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from evalkit import demo
from evalkit.cli import app
from evalkit.layout import OutputsLayout


def test_demo_writes_its_report_and_its_claims_follow_from_its_images(tmp_path, monkeypatch):
    for name, value in {"STEPS": 2, "N_TRAIN": 8, "N_TEST": 6, "EXAMPLES": 2, "PROFILE_SIZES": (8,)}.items():
        monkeypatch.setattr(demo, name, value)
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    saved = json.loads((out / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k != "files"} == {k: v for k, v in saved.items() if k != "files"}
    assert saved["files"].items() <= summary["files"].items() and summary["files"]["report.md"] == str(out / "report.md")
    assert set(summary["variants"]) == set(demo.METHODS) | set(demo.REFERENCES)
    assert {f"{m} PSNR" for m in demo.METHODS} <= set(summary["leaderboard"])  # the flat "<variant> <metric>" map

    report = (out / "report.md").read_text()
    for section in ("## Leaderboard", "## Does each exemplar-based method beat copying the exemplar?", "## Examples",
                    "## Training losses", "contextual off",
                    "## Which of the papers' orderings does this miniature reproduce?",
                    "RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)"):
        assert section in report
    report_dir = out / "run" / "report"
    for name in ("examples.png", "losses.png", "losses.pdf", "claims_vs_exemplar_copy.csv", "profile.csv",
                 "claims_vs_papers.md", "claims_vs_papers.csv"):
        assert (report_dir / name).is_file(), name
    assert {"claims_vs_papers.md", "claims_vs_papers.csv"} <= set(summary["files"])
    assert (report_dir / "claims_vs_papers.md").read_text().startswith("**Protocol** — run: " + summary["run_id"])
    grid = np.asarray(Image.open(report_dir / "examples.png"))
    tile = 2 * demo.SIZE  # 64 px tiles shown at 2x, 2x2 px gaps
    assert grid.shape[:2] == (demo.EXAMPLES * tile + (demo.EXAMPLES - 1) * 4,
                              (3 + len(demo.METHODS)) * tile + (2 + len(demo.METHODS)) * 4)

    claims = pd.read_csv(report_dir / "claims_vs_exemplar_copy.csv")
    assert set(claims["a"]) == set(demo.EXEMPLAR_BASED) and set(claims["metric"]) == set(demo.CLAIM_METRICS)
    layout = OutputsLayout(out / "run" / "outputs" / "shapes" / "seed0")

    def psnr(variant: str) -> np.ndarray:
        real = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in OutputsLayout.image_files(layout.real)}
        gen = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in OutputsLayout.image_files(layout.images(variant))}
        return np.array([peak_signal_noise_ratio(real[k], gen[k], data_range=255) for k in sorted(real)])

    copy = psnr(demo.COPY)
    for row in claims[claims["metric"] == "PSNR"].itertuples():
        delta = psnr(row.a) - copy
        assert np.isclose(row.delta, row.stat_a - row.stat_b, rtol=1e-12)
        assert np.isclose(row.delta, delta.mean(), rtol=1e-9) and np.isclose(row.stat_b, copy.mean(), rtol=1e-9)
        assert row.ci_low <= delta.mean() <= row.ci_high
        expected = (f"{row.a} beats {demo.COPY}" if row.ci_low > 0 else f"{demo.COPY} beats {row.a}"
                    if row.ci_high < 0 else "not resolved")
        assert row.verdict == expected
