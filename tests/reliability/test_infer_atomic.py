"""Issue 13 item 4: ``evalkit infer`` writes a complete outputs layout or nothing.

Everything is written into a temp folder and moved into place whole; a failure mid-way, an
injected kill, or an incompatible checkpoint (another size, another number of condition
channels) leaves the output folder exactly as it was; a smaller ``--n`` into a folder of
more samples replaces them, never keeps stale ones beside new inputs."""

from __future__ import annotations

import hashlib

import pytest
from reliability_helpers import cli, evalkit_subprocess, files_under, one_error, temp_entries

from evalkit.files import KILL_ENV
from evalkit.layout import OutputsLayout


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained spade checkpoints (the weights do not matter here): 32 px for shapes' 8
    label channels, and one built for 3-channel conditions."""
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import save_checkpoint

    d = tmp_path_factory.mktemp("ckpt")
    for name, channels in (("shapes32", 8), ("rgb32", 3)):
        save_checkpoint(build_translator("spade", cond_channels=channels, preset="tiny", seed=0, size=32),
                        d / name / "last.pt", step=0)
    return d


def _digest(folder):
    return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in files_under(folder)
            if (folder / p).is_file()}


def _infer(ckpt, out, *extra):
    return cli("infer", "--checkpoint", ckpt, "--out", out, "--device", "cpu", *extra)


def test_smaller_n_replaces_the_stale_samples(tmp_path, checkpoints):
    out = tmp_path / "out"
    assert _infer(checkpoints / "shapes32", out, "--n", "4").exit_code == 0
    layout = OutputsLayout(out)
    assert len(layout.image_files(layout.images("spade"))) == 4
    r = _infer(checkpoints / "shapes32", out, "--n", "2")
    assert r.exit_code == 0, r.stderr
    assert [p.stem for p in layout.image_files(layout.images("spade"))] == layout.names("real")
    assert len(layout.names("real")) == 2 and layout.pairs.read_text().count("\n") == 3  # header + 2 rows
    assert temp_entries(out) == []


def test_incompatible_checkpoints_are_refused_before_any_work(tmp_path, checkpoints, shared_data):
    out = tmp_path / "out"
    one_error(_infer(checkpoints / "shapes32", out, "--size", "48", "--n", "2"),
              "generates 32x32 images", "48x48 ground truth", "--size 32")
    one_error(_infer(checkpoints / "rgb32", out, "--n", "2"), "built for 3-channel conditions", "8-channel")
    ade = shared_data / "cocosnet_samples" / "imgs" / "ade20k"
    one_error(_infer(checkpoints / "shapes32", out, "--dataset", "ade20k", "--root", ade, "--n", "2"),
              "built for 8-channel conditions", "'ade20k' gives 151-channel")
    assert not out.exists()


def test_failure_on_sample_5_of_6_leaves_the_folder_as_it_was(tmp_path, checkpoints):
    """Saved outputs of an external method with sample 5 missing: infer stops at sample 5
    (one error line); the folder keeps the complete earlier outputs, byte for byte."""
    out = tmp_path / "out"
    assert _infer(checkpoints / "shapes32", out, "--n", "6").exit_code == 0
    before = _digest(out)
    external = tmp_path / "external"
    external.mkdir()
    for p in OutputsLayout(out).image_files(OutputsLayout(out).images("spade")):
        if not p.stem.endswith("00004"):
            (external / p.name).write_bytes(p.read_bytes())
    r = cli("infer", "--variant", "outputs", "--folder", external, "--name", "spade", "--size", "32", "--n", "6",
            "--batch-size", "1", "--out", out, "--device", "cpu")
    one_error(r, "no output for sample 'shapes_test_00004'")
    assert _digest(out) == before and temp_entries(tmp_path) == []
    r = cli("infer", "--variant", "outputs", "--folder", external, "--size", "32", "--n", "6", "--out",
            tmp_path / "fresh", "--device", "cpu")
    one_error(r, "no output for sample")
    assert not (tmp_path / "fresh").exists() and temp_entries(tmp_path) == []


def test_a_killed_infer_leaves_nothing_and_reruns_cleanly(tmp_path, checkpoints):
    out = tmp_path / "out"
    args = ["infer", "--checkpoint", checkpoints / "shapes32", "--n", "4", "--out", out, "--device", "cpu"]
    killed = evalkit_subprocess(*args, env_extra={KILL_ENV: "*/spade/images/*.png@3"})
    assert killed.returncode == -9, killed.stderr
    assert not out.exists() and len(temp_entries(tmp_path)) == 1  # only the staging folder, beside --out
    again = evalkit_subprocess(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert temp_entries(tmp_path) == []  # the killed run's staging folder is swept
    layout = OutputsLayout(out)
    assert len(layout.image_files(layout.images("spade"))) == 4 and layout.meta_path("spade").is_file()


def test_another_variant_of_other_inputs_is_refused(tmp_path, checkpoints):
    """Two variants share inputs/: replacing them under another variant's outputs would pair
    those outputs with the wrong ground truth, so it is refused and nothing changes."""
    out = tmp_path / "out"
    assert _infer(checkpoints / "shapes32", out, "--n", "4").exit_code == 0
    before = _digest(out)
    external = tmp_path / "external"
    external.mkdir()
    for p in OutputsLayout(out).image_files(OutputsLayout(out).images("spade"))[:2]:
        (external / p.name).write_bytes(p.read_bytes())
    r = cli("infer", "--variant", "outputs", "--folder", external, "--name", "mine", "--size", "32", "--n", "2",
            "--out", out, "--device", "cpu")
    one_error(r, "holds outputs of spade for other inputs", "4 samples there, 2 now")
    assert _digest(out) == before
    # the same samples: the new variant joins the folder, the inputs stay byte-identical
    r = cli("infer", "--variant", "outputs", "--folder", OutputsLayout(out).images("spade"), "--name", "mine",
            "--size", "32", "--n", "4", "--out", out, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    after = _digest(out)
    assert {k: v for k, v in after.items() if k.startswith("inputs")} == \
        {k: v for k, v in before.items() if k.startswith("inputs")}
    assert OutputsLayout(out).variants() == ["mine", "spade"]
