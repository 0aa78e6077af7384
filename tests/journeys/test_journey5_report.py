"""Journey 5: read the report and trust it.

Before: reports opened with the table (no run id, commit, weights or n anywhere); cells
carried no interval; leaderboard.csv had rank 0 for every third place and std 0 at one
seed; the LaTeX table was as wide as its metrics; an empty paper-table selection printed an
empty table with exit 0; Δ on a random-backbone, shapes≠ADE20K row was a green ▲.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import peak_signal_noise_ratio

from journey_helpers import cli, one_error_line
from evalkit.images import load_image
from evalkit.reports.bootstrap import bootstrap_interval


def test_every_report_opens_with_the_protocol_card(journey_run):
    run_dir = journey_run[0]
    info = json.loads((run_dir / "run.json").read_text())
    report = run_dir / "report"
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.tex", "paper_tables.md", "claims.md",
                 "claims_vs_papers.md"):
        head = (report / name).read_text(encoding="utf-8")[:1500]
        for needle in (info["run_id"], info["time"], info["git_commit"][:12], "evalkit", "FID mode", "clean",
                       "clean-pil-bicubic @ 299 px", "n=6", "random-init(seed=0)", "seeds"):
            assert needle in head, (name, needle)


def test_cells_carry_item_intervals_and_the_csv_real_ranks(journey_run):
    run_dir = journey_run[0]
    md = (run_dir / "report" / "leaderboard.md").read_text(encoding="utf-8")
    row = next(ln for ln in md.splitlines() if ln.startswith("| mymethod |"))
    assert re.search(r"\d \[\d+\.\d+, \d+\.\d+\]", row)
    # reference: PSNR per item by scikit-image, resampled with the same draws
    layout = run_dir / "outputs" / "shapes" / "seed0"
    per_item = [peak_signal_noise_ratio(load_image(layout / "inputs" / "real" / p.name), load_image(p), data_range=255)
                for p in sorted((layout / "mymethod" / "images").glob("*.png"))]
    iv = pd.read_csv(run_dir / "report" / "intervals.csv").query("variant == 'mymethod' and metric == 'PSNR'").iloc[0]
    assert [iv["ci_low"], iv["ci_high"]] == pytest.approx(bootstrap_interval(np.asarray(per_item), seed=0), rel=1e-9)
    assert iv["ci_low"] <= np.mean(per_item) <= iv["ci_high"]
    csv = pd.read_csv(run_dir / "report" / "leaderboard.csv")
    psnr = csv[csv["metric"] == "PSNR"].set_index("variant")
    assert psnr.loc["mymethod", "rank"] == 1 and psnr.loc["spade", "rank"] == 2
    assert np.isnan(psnr.loc["reference/ground-truth", "rank"])  # anchors are not ranked
    assert csv["std"].isna().all()  # one seed: no spread, not 0


def test_latex_fits_a_column_and_links_work_from_the_report_folder(journey_run):
    report = journey_run[0] / "report"
    tex = (report / "leaderboard.tex").read_text(encoding="utf-8")
    assert r"\resizebox{\columnwidth}{!}{%" in tex and r"$\infty$" in tex  # PSNR of the ground truth
    assert "inf" not in tex.replace(r"\infty", "")
    for name in ("leaderboard.md", "leaderboard.html"):
        text = (report / name).read_text(encoding="utf-8")
        targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r'href="([^"]+)"', text)
        assert len(targets) >= 4
        for t in targets:
            assert (report / t).is_file(), (name, t)
            assert not Path(t).is_absolute()
    # chosen columns: the table has exactly those
    lb = cli("report", "leaderboard", journey_run[0], "--metrics", "FID,PSNR", "--out", report.parent / "lb2")
    tex = (report.parent / "lb2" / "leaderboard.tex").read_text()
    assert "FID $\\downarrow$ & PSNR $\\uparrow$ \\\\" in tex and "SSIM" not in tex and "Protocol" in lb.stdout


def test_paper_tables_refuse_an_empty_selection_and_mark_resolution_and_n(journey_run, tmp_path):
    run_dir = journey_run[0]
    r = cli("report", "paper-tables", run_dir, "--out", tmp_path, code=2)
    line = one_error_line(r)
    assert "paper datasets: ADE20K, CelebA-HQ (semantic), CelebA-HQ, CelebA-HQ (edge), DeepFashion" in line
    layout = run_dir / "outputs" / "shapes" / "seed0"
    cli("evaluate", "--generated", layout / "mymethod" / "images", "--real", layout / "inputs" / "real",
        "--pairs", layout / "inputs" / "pairs.csv", "--metrics", "lpips-diversity,psnr", "--weights", "random",
        "--no-cache", "--dataset", "shapes", "--out", tmp_path / "mine.csv")
    r = cli("report", "paper-tables", tmp_path / "mine.csv", "--method", "rabit", "--as", "shapes=ADE20K",
            "--out", tmp_path)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| RABIT | Table 1 | ADE20K | RABIT | LPIPS"))
    assert ("not comparable: data shapes≠ADE20K, n 6≠2000, protocol clean≠rabit2022, random backbone, "
            "res 32≠256 px") in row
    assert "| n/c |" in row and "▲" not in row and "▼" not in row
    html = (tmp_path / "paper_tables.html").read_text(encoding="utf-8")
    assert "#1a7f37" not in html and "#cf222e" not in html  # nothing here is comparable: no green, no red
