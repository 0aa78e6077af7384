"""Issue 13 item 5 (and issue 12's run-config part): every config error of ``evalkit run`` is
found before anything is written: one ``error: CONFIG: FIELD: ...`` line per problem, exit
2, and no run folder, history or anything else under ``out``. An external method's saved
outputs are a named variant (``name = "outputs"``, ``folder``, ``label``)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from reliability_helpers import cli, files_under, run_config

BASE = run_config("cfg", "OUT", ['name = "spade"\nsteps = 1\nbatch_size = 4'])


def _run(tmp_path, text: str, *, encoding="utf-8"):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text.replace('out = "OUT"', f'out = "{(tmp_path / "runs").as_posix()}"').encode(encoding))
    result = cli("run", cfg, "--no-progress")
    return result, [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _ade_without_train_pairs(tmp_path, shared_data):
    root = tmp_path / "ade"
    shutil.copytree(shared_data / "cocosnet_samples" / "imgs" / "ade20k", root)
    shutil.copy(shared_data / "cocosnet_samples" / "data" / "ade20k_ref_test.txt", root)  # test list only
    return root


CASES = [
    ("batch size above n_train", lambda b: b.replace("batch_size = 4", "batch_size = 16"),
     "variants[0].batch_size: 16 is more than the 8 training samples of 'shapes'"),
    ("unknown baseline", lambda b: b + '\n[report]\nbaseline = "no-such-run"\n',
     "report.baseline: 'no-such-run' is neither a run folder, a results.csv nor a run id"),
    ("unknown dataset option", lambda b: b.replace("exemplars_per_query = 2", "exemplars_per_query = 2, foo = 1"),
     "unknown option 'foo' in datasets[0].options"),
    ("exemplars_per_query 0", lambda b: b.replace("exemplars_per_query = 2", "exemplars_per_query = 0"),
     "exemplars_per_query must be an integer >= 1, got 0"),
    ("seed beyond 64 bits", lambda b: b.replace("seeds = [0]", "seeds = [18446744073709551617]"),
     "seeds: must be distinct integers in [0, 2**32)"),
    ("metric seed beyond 32 bits", lambda b: b.replace('weights = "random"', 'weights = "random"\nseed = 4294967296'),
     "evaluation.seed: must be an integer in [0, 2**32)"),
    ("outputs without folder", lambda b: b + '\n[[variants]]\nname = "outputs"\nlabel = "mine"\n',
     "variants[1].folder: variant 'outputs' reads an external method's saved outputs"),
    ("label not a name", lambda b: b.replace('name = "spade"', 'name = "spade"\nlabel = "../x"'),
     "variants[0].label: '../x' must be letters, digits"),
]


@pytest.mark.parametrize("case, edit, line", CASES, ids=[c[0] for c in CASES])
def test_config_errors_are_found_before_anything_is_written(tmp_path, case, edit, line):
    result, errors = _run(tmp_path, edit(BASE))
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr, result.stderr
    assert errors and all(e.startswith(f"error: {tmp_path / 'c.toml'}: ") for e in errors), errors
    assert any(line in e for e in errors), (line, errors)
    assert files_under(tmp_path / "runs") == []


def test_missing_train_pair_list_is_a_config_error(tmp_path, shared_data):
    root = _ade_without_train_pairs(tmp_path, shared_data)
    text = BASE.replace('name = "shapes"', f'name = "ade20k"\nroot = "{root.as_posix()}"').replace(
        "options = { exemplars_per_query = 2 }", "").replace("n_train = 8", "n_train = 2").replace(
        "batch_size = 4", "batch_size = 2")
    result, errors = _run(tmp_path, text)
    assert result.exit_code == 2 and len(errors) == 1, result.stderr
    assert "datasets[0] (train split): cannot build dataset 'ade20k'" in errors[0] and "no pair list" in errors[0]
    assert files_under(tmp_path / "runs") == []


def test_non_utf8_config_and_read_only_out(tmp_path, readonly_dir):
    result, errors = _run(tmp_path, BASE.replace("cfg", "caf\xe9"), encoding="latin-1")
    assert result.exit_code == 2 and len(errors) == 1 and "not a UTF-8 text file" in errors[0]
    cfg = tmp_path / "ro.toml"
    cfg.write_text(BASE.replace('out = "OUT"', f'out = "{readonly_dir.as_posix()}"'), encoding="utf-8")
    result = cli("run", cfg, "--no-progress")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "out: cannot write" in errors[0], result.stderr
    assert files_under(readonly_dir) == []


def test_external_outputs_are_a_named_variant_of_the_run(tmp_path):
    """``name = "outputs"`` + ``folder`` + ``label``: the external method's images are
    scored beside the reference variant, under its own name, in every table."""
    from evalkit.data import get_dataset
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import infer

    ds = get_dataset("shapes", split="test", size=32, n=4, seed=0, exemplars_per_query=2)
    made = infer(build_translator("reference/colour-shift", cond_channels=ds.cond_channels), ds,
                 tmp_path / "made", progress=False, device="cpu")
    partial = tmp_path / "partial"
    partial.mkdir()
    for image in sorted((made / "images").iterdir())[1:]:  # the first sample's output is missing
        (partial / image.name).write_bytes(image.read_bytes())
    text = (BASE.replace('name = "spade"\nsteps = 1\nbatch_size = 4', 'name = "reference/ground-truth"')
            + '\n[[variants]]\nname = "outputs"\nfolder = "{folder}"\nlabel = "mymethod"\n')
    result, errors = _run(tmp_path, text.replace("{folder}", partial.as_posix()))
    assert result.exit_code == 2 and len(errors) == 1, result.stderr
    assert "variants[1].folder: no image for 1 of the 4 test samples of 'shapes'" in errors[0]
    assert files_under(tmp_path / "runs") == []
    result, errors = _run(tmp_path, text.replace("{folder}", (made / "images").as_posix()))
    assert result.exit_code == 0 and not errors, result.stderr
    run_dir = tmp_path / "runs" / "cfg"
    rows = pd.read_csv(run_dir / "results.csv")
    mine = rows[rows["variant"] == "mymethod"]
    assert list(mine["method"]) == ["mymethod"] and list(mine["metric"]) == ["PSNR"]
    assert (run_dir / "outputs" / "shapes" / "seed0" / "mymethod" / "images").is_dir()
    # the same value `evalkit evaluate` gives on the external folder itself
    direct = cli("evaluate", "--generated", made / "images", "--real", tmp_path / "made" / "inputs" / "real",
                 "--metrics", "psnr", "--json")
    assert direct.exit_code == 0, direct.stderr
    assert float(mine["value"].iloc[0]) == pytest.approx(json.loads(direct.stdout)[0]["value"], rel=1e-9)
