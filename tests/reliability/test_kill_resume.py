"""Issue 13 item 3: a kill -9 between a temp write and its rename loses nothing and blocks
nothing. The kill is injected (``EVALKIT_TEST_KILL_AT``, :mod:`evalkit.files`) at the rename
of a chosen file, so the test is deterministic: the process dies exactly where a real kill
leaves a temp file behind."""

from __future__ import annotations

import json

import pandas as pd
import torch
from reliability_helpers import evalkit_subprocess, run_config, temp_entries

from evalkit.files import KILL_ENV

def _config(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    text = run_config("kill", (tmp_path / name).as_posix(), ['name = "reference/blur"', 'name = "reference/ground-truth"'],
                      n_train=4, metrics=("psnr", "ssim"))
    path.write_text(text, encoding="utf-8")
    return path


def test_run_killed_at_an_output_image_rename_resumes_to_the_same_results(tmp_path):
    cfg = _config(tmp_path, "killed")
    killed = evalkit_subprocess("run", cfg, "--no-progress",
                                env_extra={KILL_ENV: "*/reference__blur/images/*.png@3"})
    assert killed.returncode == -9, killed.stderr  # SIGKILL, at the third output image's rename
    run_dir = tmp_path / "killed" / "kill"
    left = temp_entries(run_dir)
    assert any(p.endswith(".tmp") for p in left), left  # what a real kill leaves: a temp entry
    assert not (run_dir / "outputs" / "shapes" / "seed0" / "reference__blur").exists()  # never a partial variant

    resumed = evalkit_subprocess("run", cfg, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert temp_entries(run_dir) == []  # swept on resume
    images = run_dir / "outputs" / "shapes" / "seed0" / "reference__blur" / "images"
    assert sorted(p.name for p in images.iterdir()) == sorted(
        p.name for p in (run_dir / "outputs" / "shapes" / "seed0" / "inputs" / "real").iterdir())

    clean = evalkit_subprocess("run", _config(tmp_path, "clean"), "--no-progress")
    assert clean.returncode == 0, clean.stderr
    cols = ["variant", "metric", "value", "n"]
    got = pd.read_csv(run_dir / "results.csv")[cols].sort_values(cols[:2]).reset_index(drop=True)
    want = pd.read_csv(tmp_path / "clean" / "kill" / "results.csv")[cols].sort_values(cols[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_train_killed_at_a_checkpoint_rename_resumes_without_the_orphan(tmp_path):
    out = tmp_path / "ckpt"
    args = ["train", "--variant", "spade", "--steps", "2", "--n", "2", "--batch-size", "2", "--size", "32",
            "--device", "cpu", "--checkpoint-every", "1", "--out", out]
    killed = evalkit_subprocess(*args, env_extra={KILL_ENV: "last.pt@2"})
    assert killed.returncode == -9, killed.stderr
    orphans = [p for p in out.iterdir() if p.name.startswith(".last.pt.") and p.name.endswith(".tmp")]
    assert len(orphans) == 1 and orphans[0].stat().st_size > 100_000  # the second checkpoint, never renamed
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 1  # the first one is intact

    resumed = evalkit_subprocess(*args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == 2
    assert temp_entries(out) == []  # the orphan is swept, never read
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 2
