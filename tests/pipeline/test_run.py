"""`evalkit run` end to end on the tiny CI config, resume after SIGKILL, bad configs."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from pipeline_helpers import ROOT, tiny_config
from evalkit.reports import results as R

STAGES = ["train/shapes/spade/seed0", "infer/shapes/spade/seed0", "evaluate/shapes/spade/seed0",
          "train/shapes/cocosnet/seed0", "infer/shapes/cocosnet/seed0", "evaluate/shapes/cocosnet/seed0", "report"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of the tiny config (shared by the tests below)."""
    out = tmp_path_factory.mktemp("full") / "runs"
    r = CliRunner().invoke(app, ["run", str(tiny_config(out)), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    return out / "tiny-ci", json.loads(r.stdout)


def test_tiny_config_end_to_end(finished):
    run_dir, summary = finished
    assert summary["stages_computed"] == STAGES and summary["stages_skipped"] == []
    table = R.read(run_dir / "results.csv")
    assert set(table["variant"]) == {"spade", "cocosnet"}
    assert set(table["metric"]) == {"FID", "KID", "KID-std", "SWD", "SWD@16", "SWD@32", "LPIPS-gt", "LPIPS-diversity",
                                    "PSNR", "SSIM"}
    assert (table["run_id"] == summary["run_id"]).all()
    fid = table[table["metric"] == "FID"]
    assert not fid["comparable"].any() and (fid["weights_sha256"] == "random-init(seed=0)").all()
    # SPADE ignores the exemplar: its outputs for the two exemplars of a query are identical.
    div = table[(table["metric"] == "LPIPS-diversity")].set_index("variant")["value"]
    assert div["spade"] == 0.0 and div["cocosnet"] > 0.0
    report = run_dir / "report"
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.tex", "leaderboard.csv", "paper_tables.md",
                 "paper_tables.html", "paper_tables.csv", "metrics.png", "metrics.pdf", "claims.md", "claims.csv",
                 "claims_vs_papers.md", "claims_vs_papers.csv"):
        assert (report / name).stat().st_size > 0, name
    # Paired bootstrap of best vs runner-up: its full-sample statistics are the reported numbers.
    claims = pd.read_csv(report / "claims.csv").set_index("metric")
    assert set(claims.index) == {"FID", "LPIPS-gt", "PSNR", "SSIM"}
    means = table.set_index(["variant", "metric"])["value"]
    for metric, r in claims.iterrows():
        assert r["stat_a"] == pytest.approx(means[(r["a"], metric)], rel=1e-6)
        assert r["stat_b"] == pytest.approx(means[(r["b"], metric)], rel=1e-6)
        assert r["ci_low"] <= r["delta"] <= r["ci_high"] or r["verdict"] == "not resolved"
    html = (report / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 4 * (3 + 2)  # 4 examples: input, exemplar, warped, 2 outputs
    assert "random-initialised" in (report / "leaderboard.md").read_text()
    assert "not comparable: data shapes≠ADE20K" in (report / "paper_tables.md").read_text()
    # History: one run row, one measurement per results row, the run's machine and config hash.
    con = sqlite3.connect(run_dir.parent / "history.sqlite")
    runs = con.execute("SELECT run_id, config_hash, machine FROM runs").fetchall()
    n = con.execute("SELECT COUNT(*) FROM measurements WHERE run_id = ?", (summary["run_id"],)).fetchone()[0]
    con.close()
    info = json.loads((run_dir / "run.json").read_text())
    assert runs == [(summary["run_id"], info["config_hash"], info["machine"])]
    assert n == len(table)


def test_second_run_skips_every_stage(finished):
    run_dir, summary = finished
    r = CliRunner().invoke(app, ["run", str(run_dir.parent.parent / "tiny-ci.toml"), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["stages_computed"] == [] and again["stages_skipped"] == STAGES
    assert again["run_id"] == summary["run_id"]


def _markers(run_dir: Path) -> dict[str, tuple[float, str]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (run_dir / "stages").glob("*.json")}


def test_sigkill_mid_evaluation_then_resume(finished, tmp_path):
    out = tmp_path / "runs"
    config = tiny_config(out)
    run_dir = out / "tiny-ci"
    # Same intra-op thread count as the in-process uninterrupted run: CPU float sums depend on it.
    threads = str(torch.get_num_threads())
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.Popen([sys.executable, "-m", "evalkit", "run", str(config), "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run_dir / "stages.log"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill as soon as the second evaluation has started
            lines = log.read_text().splitlines() if log.is_file() else []
            if lines and lines[-1].endswith("start evaluate/shapes/cocosnet/seed0"):
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    last = log.read_text().splitlines()[-1]
    assert last.endswith("start evaluate/shapes/cocosnet/seed0")  # killed mid-evaluation
    before = _markers(run_dir)
    assert set(before) == {s.replace("/", "__") + ".json" for s in STAGES[:5]}
    r = CliRunner().invoke(app, ["run", str(config), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    resumed = json.loads(r.stdout)
    assert resumed["stages_skipped"] == STAGES[:5]
    assert resumed["stages_computed"] == STAGES[5:]
    after = _markers(run_dir)
    assert all(after[name] == before[name] for name in before)  # finished stages untouched
    # Same numbers as the uninterrupted run (only the run id differs).
    a = R.read(finished[0] / "results.csv").drop(columns="run_id")
    b = R.read(run_dir / "results.csv").drop(columns="run_id")
    pd.testing.assert_frame_equal(a, b)


BAD = """
name = "bad"
out = "{out}"
seeds = [0]
[[datasets]]
name = "ade20k"
size = "big"
[[variants]]
name = "rabbit"
[[variants]]
name = "spade"
steps = 2.5
[evaluation]
weights = "random"
"""


def test_bad_config_one_line_per_problem_nothing_written(tmp_path):
    out = tmp_path / "runs"
    config = tmp_path / "bad.toml"
    config.write_text(BAD.format(out=out.as_posix()))
    r = CliRunner().invoke(app, ["run", str(config)])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line]
    assert len(lines) == 4, r.stderr
    assert all(line.startswith(f"error: {config}: ") for line in lines)
    text = "\n".join(lines)
    assert "datasets[0].size: expected integer, got 'big'" in text
    assert "datasets[0].root: dataset 'ade20k' needs a root folder" in text
    assert "variants[0].name: unknown variant 'rabbit'" in text
    assert "variants[1].steps: expected integer, got 2.5" in text
    assert not out.exists()


def test_yaml_config_and_missing_root_folder(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"name: y\nout: {tmp_path / 'runs'}\ndatasets:\n  - name: ade20k\n    root: {tmp_path / 'nope'}\n"
                      "variants:\n  - name: reference/blur\nreport:\n  formats: [md, pdf]\n")
    r = CliRunner().invoke(app, ["run", str(config)])
    assert r.exit_code == 2
    assert f"datasets[0].root: folder '{tmp_path / 'nope'}' does not exist" in r.stderr
    assert "report.formats: unknown format 'pdf'" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_report_baseline_gate_exit_codes(finished, tmp_path):
    import shutil

    run_dir, _ = finished
    out = tmp_path / "runs"
    shutil.copytree(run_dir.parent, out)  # reuse every finished stage: only the report reruns
    base = R.read(run_dir / "results.csv")
    better = base.copy()
    better.loc[better["metric"] == "FID", "value"] *= 0.5  # the baseline had half the FID: head regressed
    R.write(better, tmp_path / "better.csv")
    R.write(base, tmp_path / "same.csv")
    policy = tmp_path / "policy.toml"
    policy.write_text("[metrics.FID]\nabs = 0.5\nrel = 0.01\n")
    for baseline, code in (("better.csv", 1), ("same.csv", 0)):
        config = tiny_config(out)
        config.write_text(config.read_text().replace(
            'paper_datasets = { shapes = "ADE20K" }',
            f'paper_datasets = {{ shapes = "ADE20K" }}\nbaseline = "{(tmp_path / baseline).as_posix()}"\n'
            f'policy = "{policy.as_posix()}"'))
        r = CliRunner().invoke(app, ["run", str(config), "--json", "--no-progress"])
        assert r.exit_code == code, r.output
        summary = json.loads(r.stdout)
        assert summary["stages_computed"] == ["report"]
        assert summary["comparison"]["regressions"] == (2 if code else 0)  # FID of spade and cocosnet
        gate = (out / "tiny-ci" / "report" / "compare.txt").read_text()
        assert ("regression" in gate) == bool(code)
