"""`evalkit profile memory`: real measurements in fresh processes (forks of one server), theory counts, fit, CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.errors import EvalkitError
from evalkit.profile.memory import (ProfileConfig, ProfileRow, fit_exponent, plot_profile,
                                    run_case, theory_elements, validate)


def test_theory_counts_follow_the_papers_and_the_implementation():
    assert theory_elements("cosine", 64, 64) == 4096 ** 2
    assert theory_elements("uot", 8, 64) == 64 ** 2
    # RAS (RABIT §3.1, b = 4 positions per 2x2 block, N = L / b, k = 3): level 2's attention
    # N k b^2 and retrieved keys N k b C, and two 2^21-entry tiles of level 1 (never the N^2 scores)
    n = 128 * 128 // 4
    assert theory_elements("ras", 128, 64) == n * 3 * 16 + n * 3 * 4 * 64 + 2 * 2 ** 21
    assert theory_elements("ras", 8, 64) == 16 * 3 * 16 + 16 * 3 * 4 * 64 + 2 * 16 * 16
    assert theory_elements("uot-streaming", 128, 64) == 1024 * 16384 + 2 * 64 * 16384 + 4 * 66 * 16384


def test_fit_exponent_recovers_a_power_law():
    L = [1024, 4096, 16384]
    assert fit_exponent(L, [3.0 * l ** 2 for l in L]) == pytest.approx(2.0)
    assert fit_exponent(L, [7.0 * l for l in L]) == pytest.approx(1.0)
    assert fit_exponent([1024], [5.0]) is None
    assert fit_exponent(L, [None, 10.0, None]) is None


def test_dense_cosine_peak_is_measured_near_two_l_squared_floats():
    # CoCosNet's forward holds the L x L logits and the L x L softmax at once
    row = run_case("cosine", 48, ProfileConfig(channels=8))
    assert row.status == "ok", row.detail
    two_l2 = 2 * (48 * 48) ** 2 * 4
    assert 0.8 * two_l2 <= row.peak_bytes <= 1.6 * two_l2
    assert row.seconds > 0 and row.theory_bytes == (48 * 48) ** 2 * 4


def test_out_of_memory_is_recorded_not_raised():
    row = run_case("cosine", 96, ProfileConfig(channels=8, memory_limit=64 * 2**20))
    assert row.status == "oom"
    assert row.peak_bytes is None and "allocate" in row.detail


def test_validate_rejects_bad_configs():
    with pytest.raises(EvalkitError, match="unknown module"):
        validate(ProfileConfig(modules=("cosine", "flash")))
    with pytest.raises(EvalkitError, match="even"):
        validate(ProfileConfig(modules=("ras",), sizes=(15,)))
    with pytest.raises(EvalkitError, match="device"):
        validate(ProfileConfig(device="tpu"))


def test_plot_is_written_atomically(tmp_path):
    rows = [ProfileRow("cosine", s, s * s, "cpu", False, "ok", 4 * s ** 4, 0.1, 4 * s ** 4,
                       "test", 2.0) for s in (8, 16)]
    rows.append(ProfileRow("cosine", 32, 1024, "cpu", False, "oom", None, None, 4 * 32 ** 4, "t"))
    out = plot_profile(rows, tmp_path / "mem.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mem.png"]
    with pytest.raises(EvalkitError, match="must end"):
        plot_profile(rows, tmp_path / "mem.txt")


def test_cli_json_rows_and_plot(tmp_path):
    plot = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["profile", "memory", "--modules", "uot-streaming",
                                      "--sizes", "8", "--channels", "8", "--iters", "2",
                                      "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["module"], r["size"], r["L"]) for r in rows] == [("uot-streaming", 8, 64)]
    for r in rows:
        assert r["status"] == "ok"
        assert set(r) >= {"module", "size", "L", "peak_bytes", "seconds", "theory_bytes"}
        assert r["peak_bytes"] >= 0 and r["seconds"] > 0
    assert plot.is_file()


@pytest.mark.parametrize("args,match", [
    (["--modules", "nope"], "unknown module"),
    (["--sizes", "a,b"], "integers"),
    (["--plot", "/nonexistent-dir/x.png"], "does not exist"),
])
def test_cli_bad_input_exits_2(args, match):
    result = CliRunner().invoke(app, ["profile", "memory", *args])
    assert result.exit_code == 2
    assert match in result.stderr


def test_device_is_resolved_before_any_case(monkeypatch, tmp_path):
    """`--device cuda` on a machine without one: exit 2 up front, not a table of error rows."""
    import torch

    import evalkit.profile.memory as M

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(M, "run_case", lambda *a, **k: pytest.fail("a case ran"))
    for device in ("cuda", "cuda:1", "tpu"):
        with pytest.raises(EvalkitError, match=f"--device {device}"):
            M.profile_memory(ProfileConfig(modules=("cosine",), sizes=(4,), device=device), progress=False)
    result = CliRunner().invoke(app, ["profile", "memory", "--device", "cuda", "--modules", "cosine",
                                      "--sizes", "4", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and result.stderr.startswith("error: --device cuda: no CUDA device")
    assert list(tmp_path.iterdir()) == []
    for bad in (dict(timeout=0), dict(memory_limit=-1), dict(channels=0)):
        with pytest.raises(EvalkitError):
            validate(ProfileConfig(modules=("cosine",), sizes=(4,), **bad))


def test_auto_device_runs_the_cases_on_the_resolved_device(monkeypatch):
    import torch

    import evalkit.profile.memory as M

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = []
    monkeypatch.setattr(M, "run_case", lambda module, size, config, server=None: seen.append(config.device) or
                        ProfileRow(module, size, size * size, config.device, False, "ok", 10, 0.1, 10, "stub"))
    rows = M.profile_memory(ProfileConfig(modules=("cosine",), sizes=(4, 8), device="auto"), progress=False)
    assert seen == ["cpu", "cpu"] and [r.device for r in rows] == ["cpu", "cpu"]
