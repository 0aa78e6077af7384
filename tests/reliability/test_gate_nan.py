"""Issue 13 item 1 (the gate lives in reports/history.py, issue 12's work): a NaN or missing
value never passes ``report compare``. In HEAD it fails the gate (exit 1); in BASE it is an
error (exit 2, one line): there is nothing to compare against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import cli, image_folder, one_error


@pytest.fixture(scope="module")
def base_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("gate")
    gen, real = image_folder(d / "gen", seed=1), image_folder(d / "real", seed=2)
    out = d / "base.csv"
    r = cli("evaluate", "--generated", gen, "--real", real, "--metrics", "psnr,ssim", "--dataset", "shapes",
            "--out", out)
    assert r.exit_code == 0, r.stderr
    return out


def _with(path, out, metric, value):
    df = pd.read_csv(path)
    df["value"] = df["value"].astype(object)
    df.loc[df["metric"] == metric, "value"] = value
    df.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("bad", [np.nan, ""], ids=["nan", "empty"])
def test_no_value_in_head_fails_the_gate(base_csv, tmp_path, bad):
    head = _with(base_csv, tmp_path / "head.csv", "SSIM", bad)
    same = cli("report", "compare", base_csv, base_csv)
    assert same.exit_code == 0, same.stderr
    r = cli("report", "compare", base_csv, head)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr and "SSIM" in r.stdout + r.stderr


def test_no_value_in_base_is_an_error(base_csv, tmp_path):
    base = _with(base_csv, tmp_path / "base_nan.csv", "PSNR", np.nan)
    one_error(cli("report", "compare", base, base_csv), "PSNR", "no value")
