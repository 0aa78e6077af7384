import math

import pandas as pd

from evalkit.reports import leaderboard as L
from report_helpers import rows

# FID (lower better): a = 10.001/10.003 (mean 10.002 → "10.00"), b = 10.004 ("10.00", ties a),
# c = 12/14 (mean 13, std sqrt(2)). LPIPS-diversity (higher better): c best, a second, b third.
VALUES = [
    ("a", "shapes", "FID", 10.001, 0), ("a", "shapes", "FID", 10.003, 1),
    ("b", "shapes", "FID", 10.004, 0),
    ("c", "shapes", "FID", 12.0, 0), ("c", "shapes", "FID", 14.0, 1),
    ("a", "shapes", "LPIPS-diversity", 0.2, 0), ("b", "shapes", "LPIPS-diversity", 0.1, 0),
    ("c", "shapes", "LPIPS-diversity", 0.3, 0),
]


def cell(lb, variant, metric):
    c = lb.cells
    return c[(c["variant"] == variant) & (c["metric"] == metric)].iloc[0]


def test_mean_std_and_ranks_on_displayed_rounding():
    lb = L.build(rows(VALUES))
    c = cell(lb, "c", "FID")
    assert math.isclose(c["mean"], 13.0) and math.isclose(c["std"], math.sqrt(2.0))
    assert c["text"] == "13.00 ± 1.41"
    # a and b both show 10.00: both best (tie on screen = tie in ranking); c is second.
    assert cell(lb, "a", "FID")["mark"] == 1 and cell(lb, "b", "FID")["mark"] == 1
    assert c["mark"] == 2 and [cell(lb, v, "FID")["rank"] for v in "abc"] == [1, 1, 2]
    assert [cell(lb, v, "LPIPS-diversity")["mark"] for v in "abc"] == [2, 0, 1]
    assert [cell(lb, v, "LPIPS-diversity")["rank"] for v in "abc"] == [2, 3, 1]  # real ranks: 3 is not blank


def test_markdown_latex_html_csv():
    lb = L.build(rows(VALUES))
    md = L.to_markdown(lb)
    assert "shapes FID ↓" in md and "shapes LPIPS-diversity ↑" in md
    assert "| a | **10.00 ± 0.00** | <u>0.200</u> |" in md
    assert "| c | <u>13.00 ± 1.41</u> | **0.300** |" in md
    assert "random-initialised" in md
    tex = L.to_latex(lb)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-3}", r"\textbf{0.300}",
                  r"\underline{13.00 $\pm$ 1.41}", r"FID $\downarrow$"):
        assert token in tex
    html = L.to_html(lb)
    assert "<b>0.300</b>" in html and "<u>0.200</u>" in html
    csv = pd.read_csv(__import__("io").StringIO(L.to_csv(lb)))
    assert math.isclose(csv.loc[(csv.variant == "a") & (csv.metric == "FID"), "mean"].item(), 10.002)


def test_example_grid_embeds_images(tmp_path):
    from PIL import Image

    for sub in ("inputs/cond", "inputs/exemplar", "rabit__ras/images", "rabit__ras/warped", "spade/images"):
        (tmp_path / sub).mkdir(parents=True)
        for name in ("s0", "s1"):
            Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / sub / f"{name}.png")
    grid = L.example_grid(tmp_path, ["rabit/ras", "spade"], n=1)
    assert grid.count("<tr>") == 2  # header + one example
    assert grid.count("data:image/png;base64,") == 5  # input, exemplar, warped, 2 outputs
    assert "warped (rabit/ras)" in grid


def test_write_creates_all_formats(tmp_path):
    paths = L.write(rows(VALUES), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"leaderboard.{k}" for k in ("md", "html", "tex", "csv"))
    assert set(paths) == {"md", "html", "tex", "csv"}


def test_cli_leaderboard_and_paper_tables(tmp_path):
    from typer.testing import CliRunner

    from evalkit.cli import app
    from evalkit.reports import results as R

    R.write(rows(VALUES + [("rabit", "shapes", "FID", 20.0, 0)]), tmp_path / "results.csv")
    r = CliRunner().invoke(app, ["report", "leaderboard", str(tmp_path), "--out", str(tmp_path / "lb")])
    assert r.exit_code == 0, r.output
    assert "| c | <u>13.00 ± 1.41</u> | **0.300** |" in r.stdout
    assert (tmp_path / "lb" / "leaderboard.tex").is_file()
    r = CliRunner().invoke(app, ["report", "paper-tables", str(tmp_path / "results.csv"), "--as", "shapes=ADE20K",
                                 "--out", str(tmp_path / "pt")])
    assert r.exit_code == 0, r.output
    assert "| 24.35 | 20.00 | n/c |" in r.stdout  # random backbone, shapes ≠ ADE20K: no Δ, no verdict
    r = CliRunner().invoke(app, ["report", "paper-tables", str(tmp_path), "--as", "shapes"])
    assert r.exit_code == 2 and "--as expects OURS=PAPER_DATASET" in r.output
    r = CliRunner().invoke(app, ["report", "leaderboard", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "results table not found" in r.output


def test_two_methods_get_a_best_but_no_second():
    lb = L.build(rows([("a", "shapes", "SSIM", 0.5, 0), ("b", "shapes", "SSIM", 0.7, 0)]))
    assert [cell(lb, v, "SSIM")["mark"] for v in "ab"] == [0, 1]
    lone = L.build(rows([("a", "shapes", "SSIM", 0.5, 0)]))
    assert cell(lone, "a", "SSIM")["mark"] == 0


def test_reference_outputs_are_shown_but_not_ranked():
    lb = L.build(rows(VALUES + [("reference/ground-truth", "shapes", "FID", 0.0, 0)]))
    assert cell(lb, "reference/ground-truth", "FID")["mark"] == 0
    assert math.isnan(cell(lb, "reference/ground-truth", "FID")["rank"])
    assert cell(lb, "a", "FID")["rank"] == 1  # the methods keep their ranks
    assert "| *reference/ground-truth* | 0.00 |" in L.to_markdown(lb)
    assert r"\textit{reference/ground-truth}" in L.to_latex(lb)


def test_runs_stay_apart_intervals_show_and_latex_fits_a_column():
    import numpy as np

    two = pd.concat([rows([("a", "shapes", "PSNR", 20.0, 0)], run_id="r1"),
                     rows([("a", "shapes", "PSNR", 30.0, 0), ("ref", "shapes", "PSNR", np.inf, 0)], run_id="r2")])
    iv = pd.DataFrame({"run_id": ["r1"], "variant": ["a"], "dataset": ["shapes"], "metric": ["PSNR"],
                       "ci_low": [19.5], "ci_high": [20.75]})
    lb = L.build(two, intervals=iv)
    assert lb.multi_run and sorted(lb.cells["mean"].tolist()) == [20.0, 30.0, np.inf]  # never averaged
    md = L.to_markdown(lb)
    assert "| run | method |" in md and "| r1 | a | 20.00 [19.50, 20.75] |" in md and "| r2 | ref | **∞** |" in md
    assert md.startswith("**Protocol** — run: r1, r2")
    tex = L.to_latex(lb)
    assert r"\resizebox{\columnwidth}{!}{%" in tex and r"$\infty$" in tex and "{\\scriptsize[19.50, 20.75]}" in tex
    assert tex.splitlines()[0].startswith("% run: r1, r2")
    csv = pd.read_csv(__import__("io").StringIO(L.to_csv(lb)))
    assert csv["std"].isna().all() and csv.loc[csv["run_id"] == "r1", "ci_low"].item() == 19.5
