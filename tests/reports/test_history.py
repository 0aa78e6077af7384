import json
import math
import sqlite3

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.errors import EvalkitError
from evalkit.reports import history as H
from evalkit.reports import results as R
from report_helpers import rows

BASE = [("rabit", "shapes", "FID", 30.0, 0), ("rabit", "shapes", "SSIM", 0.50, 0),
        ("rabit", "shapes", "time-s", 10.0, 0)]


def _info(run_id, machine="m1"):
    return H.RunInfo(run_id=run_id, name="t", git_commit="abc", dirty=False, time="2026-01-01T00:00:00+00:00",
                     machine=machine, config_hash="h", evalkit_version="0.1.0")


def _with(values, metric, value):
    return [(v, d, m, value if m == metric else x, s) for v, d, m, x, s in values]


def test_record_and_load_in_wal_mode(tmp_path):
    db = tmp_path / "h.sqlite"
    assert H.record(db, _info("base"), rows(BASE, run_id="base")) == 3
    assert H.record(db, _info("base"), rows(BASE, run_id="base")) == 3  # re-recording replaces, no duplicates
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 3
    con.close()
    info, m = H.load_run(db, "base")
    assert info == _info("base")
    assert sorted(m["metric"]) == ["FID", "SSIM", "time-s"]
    with pytest.raises(EvalkitError, match="run 'nope' not in history"):
        H.load_run(db, "nope")


def test_tolerance_formula_is_noise_aware():
    pol = H.Policy(rules={"FID": H.Rule(abs=0.1, rel=0.0, sigmas=2.0)})
    base = rows([("a", "d", "FID", 10.0, 0), ("a", "d", "FID", 12.0, 1)])  # mean 11, std sqrt 2
    head = rows([("a", "d", "FID", 13.0, 0), ("a", "d", "FID", 15.0, 1)])  # mean 14, std sqrt 2
    t = H.compare(base, head, pol, same_machine=True)
    tol = 2.0 * math.sqrt(2 / 2 + 2 / 2)  # = 2.83 < delta 3
    assert math.isclose(t["tolerance"].item(), tol) and t["status"].item() == "regression"
    head = rows([("a", "d", "FID", 12.5, 0), ("a", "d", "FID", 14.5, 1)])  # delta 2.5 < 2.83
    assert H.compare(base, head, pol, same_machine=True)["status"].item() == "ok"


def test_speed_only_on_the_same_machine_and_protocol_guard():
    base = rows(BASE)
    head = rows(_with(BASE, "time-s", 20.0))
    assert H.compare(base, head, same_machine=False).set_index("metric").loc["time-s", "status"] == "skipped: other machine"
    assert H.compare(base, head, same_machine=True).set_index("metric").loc["time-s", "status"] == "regression"
    other = rows(BASE, weights="f" * 64)
    assert set(H.compare(base, other, same_machine=True)["status"]) == {
        "skipped: protocol differs (weights random-init(seed=0) → ffffffffffff)"}


def _policy(tmp_path, fid_abs):
    p = tmp_path / "policy.toml"
    p.write_text(f'[metrics.FID]\nabs = {fid_abs}\nrel = 0.0\n[metrics."SWD@*"]\nabs = 0.1\n')
    return p


def test_cli_compare_exit_codes(tmp_path):
    db = tmp_path / "h.sqlite"
    H.record(db, _info("base"), rows(BASE, run_id="base"))
    H.record(db, _info("worse"), rows(_with(BASE, "FID", 31.0), run_id="worse"))
    H.record(db, _info("slightly"), rows(_with(BASE, "FID", 30.4), run_id="slightly"))
    runner = CliRunner()
    pol = _policy(tmp_path, 0.5)
    r = runner.invoke(app, ["report", "compare", "base", "worse", "--policy", str(pol), "--db", str(db)])
    assert r.exit_code == 1, r.output
    assert "regression" in r.output and "FID" in r.output
    r = runner.invoke(app, ["report", "compare", "base", "slightly", "--policy", str(pol), "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "runs", "--db", str(db), "--json"])
    assert r.exit_code == 0 and [row["run_id"] for row in json.loads(r.stdout)] == ["base", "worse", "slightly"]
    # A results.csv works as an operand too, and --json keeps stdout pure JSON.
    R.write(rows(_with(BASE, "FID", 31.0), run_id="csv"), tmp_path / "head.csv")
    r = runner.invoke(app, ["report", "compare", "base", str(tmp_path / "head.csv"), "--db", str(db), "--json",
                            "--policy", str(pol)])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["regressions"] == 1 and out["same_machine"] is False
    assert {row["status"] for row in out["rows"] if row["metric"] == "time-s"} == {"skipped: other machine"}


def test_bad_policy_exits_2(tmp_path):
    db = tmp_path / "h.sqlite"
    H.record(db, _info("base"), rows(BASE, run_id="base"))
    bad = tmp_path / "bad.toml"
    bad.write_text('[metrics.FID]\nabs = "big"\ndirection = "up"\n')
    r = CliRunner().invoke(app, ["report", "compare", "base", "base", "--policy", str(bad), "--db", str(db)])
    assert r.exit_code == 2
    assert "metrics.FID.abs" in r.output and "metrics.FID.direction" in r.output


def test_protocol_fields_and_nan_values_in_compare():
    base = rows(BASE)
    fewer = rows(BASE, n=4)
    t = H.compare(base, fewer, same_machine=True).set_index("metric")
    assert t.loc["FID", "status"] == "skipped: protocol differs (n 8 → 4)"
    legacy = rows(BASE, metric_variant="legacy")
    assert H.compare(base, legacy, same_machine=True).set_index("metric").loc["FID", "status"] == \
        "skipped: protocol differs (metric variant clean → legacy)"
    nan_head = rows(_with(BASE, "SSIM", float("nan")))
    t = H.compare(base, nan_head, same_machine=True).set_index("metric")
    assert t.loc["SSIM", "status"] == "failed: no value in head" and t.loc["FID", "status"] == "ok"
    assert len(H.failures(t.reset_index())) == 1
    with pytest.raises(EvalkitError, match="base: 1 base measurement\\(s\\) have no value .*rabit/shapes/SSIM"):
        H.compare(nan_head, base, same_machine=True)


def test_history_keys_written_before_the_later_protocol_fields_still_compare(tmp_path):
    """A measurement recorded with the five-field protocol key compares with a current one."""
    db = tmp_path / "h.sqlite"
    H.record(db, _info("base"), rows(BASE, run_id="base"))
    con = sqlite3.connect(db)
    con.execute("UPDATE measurements SET protocol = substr(protocol, 1, instr(protocol, '|none|') - 1)")
    con.commit()
    old_key = con.execute("SELECT protocol FROM measurements LIMIT 1").fetchone()[0]
    con.close()
    assert old_key.count("|") == 4
    g = H.gate("base", str(R.write(rows(BASE, run_id="head"), tmp_path / "head.csv")), db=db)
    assert set(g.table["status"]) == {"ok", "skipped: other machine"}
