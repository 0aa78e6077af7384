"""Run configs are checked by building every translator on the meta device (nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]


def _unbuildable_config(tmp_path: Path, out: Path) -> Path:
    """configs/tiny-ci.toml at 96 px with ``corr_size = 32`` for cocosnet: field-valid, but 96 / 32 is no power of two."""
    text = (ROOT / "configs" / "tiny-ci.toml").read_text(encoding="utf-8")
    text = text.replace('out = "runs"', f'out = "{out.as_posix()}"').replace("size = 32", "size = 96")
    text = text.replace('name = "cocosnet"\n', 'name = "cocosnet"\noverrides = { corr_size = 32 }\n')
    assert "size = 96" in text and "corr_size = 32" in text and out.as_posix() in text
    path = tmp_path / "unbuildable.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_run_with_a_translator_that_cannot_build_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    config = _unbuildable_config(tmp_path, out)
    r = CliRunner().invoke(app, ["run", str(config), "--no-progress"])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {config}: variants[1].overrides: variant 'cocosnet' cannot be built")
    assert "power of two" in lines[0] and "with dataset 'shapes' at size 96" in lines[0]
    assert "Traceback" not in r.output
    assert not out.exists()


def _problems(variants: list[dict], datasets: list[dict] | None = None) -> list[str]:
    data = {"name": "c", "datasets": datasets or [{"name": "shapes", "size": 32}], "variants": variants}
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="c.toml")
    return err.value.problems


def test_config_problems_from_typed_translator_configs():
    problems = _problems([
        {"name": "rabit", "overrides": {"position": "spe2"}},
        {"name": "spade", "overrides": {"corr_size": 8}},
        {"name": "unite", "overrides": {"losses": {"gan": "x"}}},
        {"name": "reference/blur", "overrides": {"ngf": 8}},
        {"name": "outputs"},
    ])
    assert len(problems) == 5, problems
    assert problems[0].startswith("c.toml: variants[0].overrides: ") and "position='spe2'" in problems[0] \
        and "'none', 'spe', 'coord'" in problems[0]
    assert "variants[1].overrides" in problems[1] and "a field of cocosnet, rabit, unite variants" in problems[1]
    assert "variants[2].overrides" in problems[2] and "losses.gan='x'" in problems[2]
    assert "variants[3].overrides: reference outputs take no translator overrides" in problems[3]
    assert "variants[4].folder: variant 'outputs' reads an external method's saved outputs" in problems[4]


def test_every_dataset_is_checked_with_its_own_channels_and_options():
    # 96 px works for spade (num_up 4), but the dataset options are wrong: one dataset line, no variant line
    problems = _problems([{"name": "spade"}], [{"name": "shapes", "size": 96, "options": {"exemplars": 2}}])
    assert len(problems) == 1 and problems[0].startswith("c.toml: datasets[0]: cannot build dataset 'shapes'")
    cfg = parse_config({"name": "ok", "datasets": [{"name": "shapes", "size": 32}, {"name": "shapes-edge", "size": 64}],
                        "variants": [{"name": "rabit"}, {"name": "reference/blur"}]}, source="ok.toml")
    assert [v.is_reference for v in cfg.variants] == [False, True]
