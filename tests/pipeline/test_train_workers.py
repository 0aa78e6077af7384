"""`train_workers`: a run's trainings side by side in their own processes compute what the
sequential run computes (same checkpoints bit for bit at one thread, same results, same run
hash), a failed training is one error naming its stage and log, and bad settings are refused."""

from __future__ import annotations

import json

import pandas as pd
import torch
from typer.testing import CliRunner

from evalkit import devices
from evalkit.cli import app
from pipeline_helpers import tiny_config

TRAIN = ["train/shapes/spade/seed0", "train/shapes/cocosnet/seed0"]


def _config(root, workers: int, extra: str = ""):
    root.mkdir(parents=True, exist_ok=True)
    path = tiny_config(root / "runs", name="tw")
    text = path.read_text(encoding="utf-8").replace("seeds = [0]", f"seeds = [0]\ntrain_workers = {workers}{extra}")
    path.write_text(text, encoding="utf-8")
    return path


def _run(config):
    r = CliRunner().invoke(app, ["run", str(config), "--json", "--no-progress"])
    return r, (json.loads(r.stdout[r.stdout.index("{"):]) if r.exit_code == 0 else None)


def test_parallel_trainings_equal_the_sequential_ones(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference: the same run, sequential, one thread
    try:
        r, sequential = _run(_config(tmp_path / "seq", 1))
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)  # 2 processes x 1 thread, whatever this machine has
    torch.set_num_threads(1)  # and the run's evaluation at one thread too, as the reference's
    try:
        r, parallel = _run(_config(tmp_path / "par", 2))
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output

    assert set(TRAIN) <= set(parallel["stages_computed"]) and not parallel["stages_skipped"]
    assert sorted(parallel["stages_computed"]) == sorted(sequential["stages_computed"])
    seq_dir, par_dir = tmp_path / "seq" / "runs" / "tw", tmp_path / "par" / "runs" / "tw"
    seq_cfg, par_cfg = (json.loads((d / "config.json").read_text()) for d in (seq_dir, par_dir))
    assert seq_cfg["hash"] == par_cfg["hash"]  # how the run executes is not what it computes
    for variant in ("spade", "cocosnet"):
        a = torch.load(seq_dir / "checkpoints" / "shapes" / variant / "seed0" / "last.pt", weights_only=False)
        b = torch.load(par_dir / "checkpoints" / "shapes" / variant / "seed0" / "last.pt", weights_only=False)
        assert a["step"] == b["step"] == 2 and a["model"].keys() == b["model"].keys()
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (variant, k)
        assert (par_dir / "stages" / f"train__shapes__{variant}__seed0.json").is_file()
        assert not list((par_dir / "stages").glob("*.job"))  # the job files are gone
    cols = ["variant", "metric", "value"]
    pd.testing.assert_frame_equal(pd.read_csv(seq_dir / "results.csv")[cols], pd.read_csv(par_dir / "results.csv")[cols])
    log = (par_dir / "stages.log").read_text()
    assert all(f"done {s}" in log for s in TRAIN)

    r, again = _run(_config(tmp_path / "par", 2))  # a second run skips every stage, trainings included
    assert r.exit_code == 0, r.output
    assert not again["stages_computed"] and set(TRAIN) <= set(again["stages_skipped"])


def test_a_failed_training_is_one_error_naming_its_stage_and_log(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    config = _config(tmp_path, 2)
    blocked = tmp_path / "runs" / "tw" / "checkpoints" / "shapes" / "cocosnet"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the checkpoint folder goes")
    r, _ = _run(config)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    log = tmp_path / "runs" / "tw" / "stages" / "train__shapes__cocosnet__seed0.log"
    assert lines[0].startswith("error: training train/shapes/cocosnet/seed0 failed in its process") and str(log) in lines[0]
    assert "NotADirectoryError" in lines[0] or "FileExistsError" in lines[0]
    assert not (tmp_path / "runs" / "tw" / "results.csv").exists()


def test_bad_train_workers_are_refused(tmp_path):
    for workers, device, why in ((0, "cpu", "train_workers: must be >= 1, got 0"),
                                 (2, "cuda", "train_workers: 2 parallel training processes run on the CPU only")):
        r = CliRunner().invoke(app, ["run", str(_config(tmp_path / f"{workers}{device}", workers,
                                                        f'\ndevice = "{device}"'))])
        assert r.exit_code == 2
        assert why in r.stderr, r.stderr
