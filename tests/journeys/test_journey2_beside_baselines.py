"""Journey 2: put my outputs beside the baselines.

Before: `report leaderboard mine.csv` said "invalid results table: missing column(s) run_id,
split, seed"; several tables could not share a board; `--method`/`--dataset` did not exist;
`infer --name` did not exist; a bad run config left config.json, run.json and stages.log.
"""

from __future__ import annotations

import json

import pandas as pd

from journey_helpers import cli, one_error_line
from evalkit.reports import results as R

RANDOM = ["--weights", "random", "--no-cache"]


def _evaluate(run_dir, variant_dir, out, *extra):
    layout = run_dir / "outputs" / "shapes" / "seed0"
    return cli("evaluate", "--generated", layout / variant_dir / "images", "--real", layout / "inputs" / "real",
               "--pairs", layout / "inputs" / "pairs.csv", "--metrics", "psnr,ssim,lpips-diversity", "--out", out,
               *RANDOM, *extra)


def test_the_evaluate_csv_is_a_results_table_every_report_reads(journey_run, tmp_path):
    run_dir = journey_run[0]
    mine = tmp_path / "mine.csv"
    _evaluate(run_dir, "mymethod", mine, "--dataset", "shapes")
    table = R.read(mine)  # the one results schema
    assert list(table.columns) == R.COLUMNS and set(table["variant"]) == {"mymethod"}
    assert set(table["metric_variant"]) == {"skimage", "alex-v0.1"} and set(table["run_id"]) == {"mine"}
    # the run computed the same numbers for the same outputs
    run = R.read(run_dir / "results.csv")
    for metric in ("PSNR", "SSIM", "LPIPS-diversity"):
        ours = table.loc[table["metric"] == metric, "value"].item()
        assert ours == run.loc[(run["variant"] == "mymethod") & (run["metric"] == metric), "value"].item()
    # several tables on one board, rows of different runs kept apart (never averaged as seeds)
    r = cli("report", "leaderboard", mine, run_dir, "--out", tmp_path / "board", "--metrics", "PSNR,SSIM")
    board = r.stdout
    assert "| run | method |" in board
    rows = [ln for ln in board.splitlines() if "mymethod" in ln and ln.startswith("|")]
    assert len(rows) == 2 and rows[0].startswith("| mine |")
    csv = pd.read_csv(tmp_path / "board" / "leaderboard.csv")
    assert csv.loc[csv["variant"] == "mymethod", "count"].tolist() == [1, 1, 1, 1]
    # the same table twice: still two boards' rows, labelled by file
    r = cli("report", "leaderboard", mine, mine, "--out", tmp_path / "twice")
    assert f"| mine ({mine}) | mymethod |" in r.stdout and f"| mine ({mine} #2) | mymethod |" in r.stdout
    # compare reads it; paper-tables fills method and dataset from the options
    cli("report", "compare", mine, mine)
    unmatched = cli("report", "paper-tables", mine, "--out", tmp_path / "pt", code=2)
    assert "paper datasets: ADE20K" in one_error_line(unmatched)
    r = cli("report", "paper-tables", mine, "--method", "rabit", "--dataset", "ade20k", "--out", tmp_path / "pt")
    assert "| RABIT | Table 1 | ADE20K | RABIT | LPIPS ↑ | 0.571 |" in r.stdout
    several = cli("report", "paper-tables", run_dir, "--method", "rabit", code=2)
    assert "holds several methods" in one_error_line(several)


def test_an_external_method_is_a_named_variant_of_a_run(journey_run, tmp_path):
    run_dir, _, config, my_outputs = journey_run
    table = R.read(run_dir / "results.csv")
    assert {"mymethod", "spade", "reference/ground-truth"} <= set(table["variant"])
    assert (run_dir / "outputs" / "shapes" / "seed0" / "mymethod" / "images").is_dir()
    # the same outputs through `evalkit infer`, named, then evaluated under that name
    out = tmp_path / "outputs"
    r = cli("infer", "--variant", "outputs", "--name", "mymethod", "--folder", my_outputs, "--size", "32",
            "--dataset", "shapes", "--n", "6", "--exemplars-per-query", "2", "--out", out, "--json")
    assert json.loads(r.stdout)["variant"] == "mymethod"
    res = cli("evaluate", "--generated", out / "mymethod" / "images", "--real", out / "inputs" / "real",
              "--metrics", "psnr", "--json", *RANDOM)
    row = json.loads(res.stdout)[0]
    assert row["variant"] == "mymethod"


def test_a_bad_run_config_writes_nothing(journey_run, tmp_path):
    config = journey_run[2]
    bad = tmp_path / "bad.toml"
    text = config.read_text().replace(f'out = "{journey_run[0].parent}"', f'out = "{tmp_path / "runs"}"')
    bad.write_text(text.replace('name = "spade"', 'name = "spadee"'))
    r = cli("run", bad, "--no-progress", code=2)
    assert "spadee" in r.stderr and r.stderr.startswith("error:")
    assert not (tmp_path / "runs").exists()
