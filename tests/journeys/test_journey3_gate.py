"""Journey 3: gate a regression honestly (and issue 13 item 1: a NaN never passes).

Before: the same outputs evaluated at n=6 and n=4 "regressed" (exit 1); FID +0.3 failed
at the default tolerance 1e-6 though configs/policy.toml allows 0.5; a NaN in HEAD passed
with status `ok`; the summary named at most 5 failures without saying how many were compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from journey_helpers import cli, one_error_line
from evalkit.reports import history as H

RANDOM = ["--weights", "random", "--no-cache"]


@pytest.fixture(scope="module")
def evaluated(journey_run, tmp_path_factory):
    """The run's spade outputs evaluated at n=6 (all) and at n=4 (a folder of the first four)."""
    layout = journey_run[0] / "outputs" / "shapes" / "seed0"
    out = tmp_path_factory.mktemp("gate")
    common = ["--real", layout / "inputs" / "real", "--metrics", "psnr,ssim,lpips", "--dataset", "shapes", *RANDOM]
    cli("evaluate", "--generated", layout / "spade" / "images", *common, "--out", out / "base.csv")
    first4 = [p for p in sorted((layout / "spade" / "images").glob("*.png"))][:4]
    (out / "four").mkdir()
    for p in first4:
        (out / "four" / p.name).write_bytes(p.read_bytes())
    cli("evaluate", "--generated", out / "four", *common, "--method", "spade", "--out", out / "head4.csv")
    return out


def test_a_protocol_change_is_skipped_not_a_regression(evaluated):
    r = cli("report", "compare", evaluated / "base.csv", evaluated / "head4.csv")
    assert "skipped: protocol differs (n 6 → 4)" in r.stdout
    assert "0 of 0 compared measurement(s) fail the gate; 3 skipped" in r.stdout


def test_default_policy_is_the_shipped_noise_aware_one(evaluated, tmp_path):
    assert H.Policy.shipped() == H.Policy.load(Path(__file__).resolve().parents[2] / "configs" / "policy.toml")
    base = pd.read_csv(evaluated / "base.csv")
    small = base.assign(value=[v + 0.05 if m == "PSNR" else v for m, v in zip(base["metric"], base["value"])])
    small.to_csv(tmp_path / "small.csv", index=False)
    r = cli("report", "compare", evaluated / "base.csv", tmp_path / "small.csv")  # PSNR abs 0.1 in the policy
    assert "0 of 3 compared measurement(s) fail the gate" in r.stdout
    worse = base.assign(value=[v - 1.0 if m == "PSNR" else v + 0.5 if m == "LPIPS-gt" else v
                               for m, v in zip(base["metric"], base["value"])])
    worse.to_csv(tmp_path / "worse.csv", index=False)
    r = cli("report", "compare", evaluated / "base.csv", tmp_path / "worse.csv", code=1)
    assert "regression: 2 of 3 compared measurement(s) fail the gate: " in r.stderr
    assert "spade/shapes/PSNR (regression)" in r.stderr and "spade/shapes/LPIPS-gt (regression)" in r.stderr


def test_nan_in_head_fails_and_nan_in_base_is_an_error(evaluated, tmp_path):
    base = pd.read_csv(evaluated / "base.csv")
    broken = base.assign(value=[float("nan") if m == "SSIM" else v for m, v in zip(base["metric"], base["value"])])
    broken.to_csv(tmp_path / "nan.csv", index=False)
    r = cli("report", "compare", evaluated / "base.csv", tmp_path / "nan.csv", "--json", code=1)
    rows = {row["metric"]: row["status"] for row in json.loads(r.stdout)["rows"]}
    assert rows["SSIM"] == "failed: no value in head" and rows["PSNR"] == "ok"
    empty = (tmp_path / "nan.csv").read_text()
    assert ",SSIM,," in empty  # an empty cell: a missing value, the same failure
    r = cli("report", "compare", tmp_path / "nan.csv", evaluated / "base.csv", code=2)
    line = one_error_line(r)
    assert "base measurement(s) have no value (NaN or empty): spade/shapes/SSIM" in line


def test_many_failures_are_counted_and_configs_compared(journey_run, run_copy):
    run_dir = journey_run[0]
    table = pd.read_csv(run_copy / "results.csv")
    table["value"] = [v * 3 + 1 if m in ("FID", "LPIPS-gt", "KID") else v for m, v in zip(table["metric"], table["value"])]
    table.to_csv(run_copy / "results.csv", index=False)
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**info, "config_hash": "0" * 64}))
    r = cli("report", "compare", run_dir, run_copy, code=1)
    failing = int(r.stderr.split("regression: ")[1].split(" of ")[0])
    assert failing > 5 and f"and {failing - 5} more" in r.stderr and "configs differ" in r.stderr
    assert "configs differ: base config" in r.stdout
    missing = cli("report", "compare", run_dir, "missing/", code=2)
    assert "missing/: no such folder or results table" in one_error_line(missing)
