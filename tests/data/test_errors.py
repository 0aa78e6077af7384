"""Bad input: one line naming the file and the problem, exit 2; `data check` lists them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.data import get_dataset
from evalkit.data.pairs import read_pair_list
from evalkit.errors import EvalkitError

runner = CliRunner()


def make_ade(root: Path, n_val: int = 2, n_train: int = 2, size: tuple[int, int] = (24, 16)) -> Path:
    """A tiny ADE20K layout (random images, label ids 0..150) plus its test pair list."""
    rng = np.random.default_rng(0)
    lines = []
    for split, folder, n in (("val", "validation", n_val), ("train", "training", n_train)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"ADE_{split}_{i:08d}"
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / folder / f"{stem}.jpg")
            Image.fromarray(rng.integers(0, 151, (size[1], size[0]), dtype=np.uint8)).save(root / folder / f"{stem}.png")
            if split == "val":
                lines.append(f"{stem}.jpg,ADE_train_{i % max(n_train, 1):08d}.jpg")
    (root / "ade20k_ref_test.txt").write_text("\n".join(lines) + "\n")
    return root


def check(root: Path, *extra: str):
    return runner.invoke(app, ["data", "check", "ade20k", "--root", str(root), *extra])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


def test_clean_layout_passes(tmp_path):
    root = make_ade(tmp_path)
    result = check(root)
    assert result.exit_code == 0 and "2 samples, 0 problems" in result.stdout
    assert get_dataset("ade20k", root=root, size=16)[1].cond.shape == (151, 16, 16)


def test_missing_image_for_label(tmp_path):
    root = make_ade(tmp_path)
    (root / "validation" / "ADE_val_00000001.jpg").unlink()
    result = check(root)
    assert "image not found for label map" in result.stdout and "ADE_val_00000001.png" in result.stdout
    one_line_error(result)
    with pytest.raises(EvalkitError, match="ADE_val_00000001"):
        get_dataset("ade20k", root=root, size=16)


def test_label_id_out_of_range(tmp_path):
    root = make_ade(tmp_path)
    lab = np.zeros((16, 24), np.uint8)
    lab[3, 4] = 200
    Image.fromarray(lab).save(root / "validation" / "ADE_val_00000000.png")
    result = check(root)
    assert "label id 200 out of range" in result.stdout and "ADE_val_00000000.png" in result.stdout
    one_line_error(result)
    ds = get_dataset("ade20k", root=root, size=16)  # files exist: the error comes at load time
    with pytest.raises(EvalkitError, match=r"label id 200 out of range in .*ADE_val_00000000\.png"):
        ds[0]


def test_image_label_size_mismatch(tmp_path):
    root = make_ade(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "validation" / "ADE_val_00000001.png")
    result = check(root)
    assert "size mismatch" in result.stdout and "ADE_val_00000001.png is 10x10 but its image is 24x16" in result.stdout
    with pytest.raises(EvalkitError, match="size mismatch"):
        get_dataset("ade20k", root=root, size=16)[1]


def test_corrupt_file(tmp_path):
    root = make_ade(tmp_path)
    (root / "validation" / "ADE_val_00000000.jpg").write_bytes(b"\xff\xd8not a jpeg at all")
    result = check(root)
    assert "cannot decode image" in result.stdout and "ADE_val_00000000.jpg" in result.stdout
    one_line_error(result)
    with pytest.raises(EvalkitError, match="cannot decode image .*ADE_val_00000000.jpg"):
        get_dataset("ade20k", root=root, size=16)[0]


def test_pair_list_naming_missing_file(tmp_path):
    root = make_ade(tmp_path)
    (root / "ade20k_ref_test.txt").write_text("ADE_val_00000000.jpg,ADE_train_00000099.jpg\n"
                                              "ADE_val_00000001.jpg,ADE_train_00000001.jpg\n")
    result = check(root)
    assert "image not found" in result.stdout and "ADE_train_00000099.jpg" in result.stdout
    assert "exemplar of ADE_val_00000000.jpg" in result.stdout
    with pytest.raises(EvalkitError, match="ADE_train_00000099.jpg"):
        get_dataset("ade20k", root=root, size=16)


def test_empty_split(tmp_path):
    root = make_ade(tmp_path, n_val=0)
    result = check(root)
    one_line_error(result)
    assert "problem: empty split 'test'" in result.stdout and "validation" in result.stdout
    with pytest.raises(EvalkitError, match="empty split 'test'"):
        get_dataset("ade20k", root=root)


def test_check_lists_every_problem(tmp_path):
    root = make_ade(tmp_path, n_val=6)
    (root / "validation" / "ADE_val_00000000.jpg").write_bytes(b"garbage")  # corrupt
    Image.fromarray(np.full((16, 24), 177, np.uint8)).save(root / "validation" / "ADE_val_00000001.png")  # range
    (root / "validation" / "ADE_val_00000002.jpg").unlink()  # missing image
    (root / "training" / "ADE_train_00000001.png").unlink()  # exemplar annotation missing
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "validation" / "ADE_val_00000004.png")  # size mismatch
    lines = (root / "ade20k_ref_test.txt").read_text().splitlines()
    lines[5] = "ADE_val_00000005.jpg"  # malformed line: the query loses its exemplar too
    lines.append("ADE_val_00000005.jpg,")  # a second malformed line is reported as well
    (root / "ade20k_ref_test.txt").write_text("\n".join(lines) + "\n")
    result = check(root, "--json")
    assert result.exit_code == 2
    import json

    report = json.loads(result.stdout)
    text = "\n".join(report["problems"])
    needles = ("ADE_val_00000000.jpg", "label id 177", "ADE_val_00000002.png", "ADE_train_00000001.png",
               "size mismatch: " + str(root / "validation" / "ADE_val_00000004.png"),
               "ade20k_ref_test.txt:6: expected", "ade20k_ref_test.txt:7: expected",
               "no exemplar listed for query ADE_val_00000005.jpg")
    assert len(report["problems"]) == len(needles), text
    for needle in needles:
        assert needle in text, needle
    # loading (not checking) stops at the first problem, with one line that says more exist
    with pytest.raises(EvalkitError, match=r"and \d+ more problems; run `evalkit data check`"):
        get_dataset("ade20k", root=root, size=16)


def test_pair_list_parsing(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("img\\WOMEN\\a.jpg,img\\MEN\\b.jpg,img\\MEN\\c.jpg\n\nq2.jpg,e2.jpg")
    assert read_pair_list(p) == {"img/WOMEN/a.jpg": ["img/MEN/b.jpg", "img/MEN/c.jpg"], "q2.jpg": ["e2.jpg"]}
    p.write_text("q.jpg,e.jpg\nlonely.jpg\n")
    with pytest.raises(EvalkitError, match=r"p\.txt:2: expected 'query,exemplar"):
        read_pair_list(p)
    p.write_text("\n")
    with pytest.raises(EvalkitError, match="is empty"):
        read_pair_list(p)


def test_unknown_dataset_and_missing_root():
    result = runner.invoke(app, ["data", "check", "nope"])
    assert "unknown dataset 'nope'; choose one of:" in one_line_error(result)
    with pytest.raises(EvalkitError, match="needs --root"):
        get_dataset("ade20k")
