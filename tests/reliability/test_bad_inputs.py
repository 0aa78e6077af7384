"""Issue 13, "every bad input": one ``error:`` line, exit 2, nothing half-written.

Each test feeds one bad input through the CLI and checks the exit code, the one error
line and what exists afterwards. (Devices such as ``--device cuda:7`` are in
tests/test_cli_errors.py; run configs in test_run_config.py; small images in
test_metric_inputs.py.)
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import struct
import zlib

import numpy as np
import pytest
import torch
from reliability_helpers import cli, files_under, image_folder, one_error, temp_entries
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.files import atomic_path, write_atomic

ADE = ("cocosnet_samples", "imgs", "ade20k")


def bomb_png(path, side=30000):
    """A 1x1 PNG whose IHDR claims ``side`` x ``side`` (900 Mpixel): a decompression bomb header."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", side, side) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def png16(path):
    """A 16-bit RGB PNG, written without Pillow (which would open it as 8-bit RGB)."""
    raw = b"".join(b"\0" + np.full((4, 3), 40000, ">u2").tobytes() for _ in range(4))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("sets")
    return image_folder(d / "gen", seed=1), image_folder(d / "real", seed=2)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An outputs layout (reference/blur on shapes, 3 queries x 3 exemplars): pairs.csv with groups."""
    from evalkit.data import get_dataset
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import infer

    out = tmp_path_factory.mktemp("outputs") / "out"
    ds = get_dataset("shapes", split="test", size=32, n=9, seed=0, exemplars_per_query=3)
    infer(build_translator("reference/blur", cond_channels=ds.cond_channels), ds, out, progress=False, device="cpu")
    return out


def test_decompression_bomb_is_refused_before_decoding(tmp_path, sets):
    gen, real = sets
    bombs = tmp_path / "bombs"
    shutil.copytree(gen, bombs)
    bomb_png(bombs / "s3.png")
    one_error(cli("evaluate", "--generated", bombs, "--real", real, "--metrics", "psnr", "--weights", "random",
                  "--out", tmp_path / "rows.csv"), "s3.png", "decompression bomb", "900 Mpixel")
    assert not (tmp_path / "rows.csv").exists()
    out = tmp_path / "study_out"
    for sub in ("inputs/cond", "inputs/exemplar", "a/images", "b/images"):
        image_folder(out / sub, 3, size=16)
    bomb_png(out / "a" / "images" / "s0.png")
    one_error(cli("study", "create", "--outputs", out, "--trials", "3", "--study", tmp_path / "s.sqlite"),
              "decompression bomb")
    assert not (tmp_path / "s.sqlite").exists() and temp_entries(tmp_path) == []


def test_16_bit_rgb_png_is_refused(tmp_path, sets):
    gen, real = sets
    mixed = tmp_path / "mixed"
    shutil.copytree(gen, mixed)
    png16(mixed / "s3.png")
    assert Image.open(mixed / "s3.png").mode == "RGB"  # what Pillow alone would read: 8 bits, silently
    one_error(cli("evaluate", "--generated", mixed, "--real", real, "--metrics", "psnr", "--weights", "random"),
              "s3.png", "16-bit PNG")


def test_evaluate_out_that_cannot_be_written(tmp_path, sets, readonly_dir, full_dir):
    gen, real = sets
    args = ["evaluate", "--generated", gen, "--real", real, "--metrics", "psnr", "--weights", "random", "--out"]
    (tmp_path / "rows.csv").mkdir()
    one_error(cli(*args, tmp_path / "rows.csv"), "is a folder")
    one_error(cli(*args, readonly_dir / "rows.csv"), "read-only")
    assert files_under(readonly_dir) == []
    one_error(cli(*args, full_dir / "rows.csv"), "no space left")
    assert [p for p in files_under(full_dir) if p != "filler"] == []
    (full_dir / "filler").unlink()  # a disk that fills up meanwhile: found at the write itself
    with open(full_dir / "filler", "wb") as f:
        f.write(b"\0" * (200 * 1024))  # room left, but less than the write needs
    with pytest.raises(EvalkitError, match="no space left"):
        write_atomic(full_dir / "big.csv", b"x" * (1024 * 1024))
    with pytest.raises(EvalkitError, match="no space left"), atomic_path(full_dir / "last.pt") as tmp:
        torch.save({"weights": torch.zeros(300_000)}, tmp)  # torch says "unexpected pos": still one line
    assert [p for p in files_under(full_dir) if p != "filler"] == []


def test_read_only_outputs_of_every_writing_command(tmp_path, readonly_dir, outputs, shared_data):
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import save_checkpoint

    ckpt = save_checkpoint(build_translator("spade", cond_channels=8, size=32), tmp_path / "ck" / "last.pt", step=0)
    ro = readonly_dir
    results = tmp_path / "results.csv"
    rows = cli("evaluate", "--generated", outputs / "reference__blur" / "images", "--real", outputs / "inputs" / "real",
               "--metrics", "psnr", "--dataset", "shapes", "--out", results)
    assert rows.exit_code == 0, rows.stderr
    cases = [
        ("data", "pairs", "ade20k", "--root", shared_data.joinpath(*ADE), "--out", ro / "pairs.txt",
         "--weights", "random", "--size", "32"),
        ("data", "manipulation", "shapes", "--out", ro / "manip", "--n", "2", "--size", "32"),
        ("train", "--variant", "spade", "--steps", "1", "--n", "2", "--batch-size", "2", "--size", "32",
         "--device", "cpu", "--out", ro / "train"),
        ("infer", "--checkpoint", ckpt, "--n", "2", "--device", "cpu", "--out", ro / "infer"),
        ("report", "leaderboard", results, "--out", ro / "board"),
        ("study", "create", "--outputs", outputs, "--inputs", outputs / "inputs", "--trials", "2",
         "--study", ro / "s.sqlite"),
    ]
    for argv in cases:
        if argv[0] == "study":  # a study needs two methods: the outputs folder has one, add a copy
            shutil.copytree(outputs / "reference__blur", tmp_path / "two" / "blur")
            shutil.copytree(outputs / "reference__blur", tmp_path / "two" / "blur2")
            argv = ("study", "create", "--outputs", f"a={tmp_path / 'two' / 'blur'}",
                    "--outputs", f"b={tmp_path / 'two' / 'blur2'}", *argv[4:])
        one_error(cli(*argv), "cannot write", "read-only")
    assert files_under(ro) == []


def test_non_utf8_pair_lists(tmp_path, outputs, shared_data):
    binary = tmp_path / "pairs.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage,\xc3\x28\n")
    r = cli("data", "check", "ade20k", "--root", shared_data.joinpath(*ADE), "--pairs", binary)
    assert r.exit_code == 2 and "not UTF-8 text" in r.stdout, r.stdout
    one_error(cli("evaluate", "--generated", outputs / "reference__blur" / "images", "--real", outputs / "inputs" / "real",
                  "--metrics", "lpips-diversity", "--weights", "random", "--pairs", binary), "not a UTF-8 text file")


def _diversity(outputs, pairs):
    return cli("evaluate", "--generated", outputs / "reference__blur" / "images", "--real", outputs / "inputs" / "real",
               "--metrics", "lpips-diversity", "--weights", "random", "--no-cache", "--pairs", pairs, "--json")


def test_pairs_csv_duplicates_short_rows_and_bom(tmp_path, outputs):
    text = (outputs / "inputs" / "pairs.csv").read_text()
    lines = text.splitlines()
    clean = _diversity(outputs, outputs / "inputs" / "pairs.csv")
    assert clean.exit_code == 0, clean.stderr
    value = json.loads(clean.stdout)[0]["value"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    with_bom = _diversity(outputs, bom)
    assert with_bom.exit_code == 0 and json.loads(with_bom.stdout)[0]["value"] == value  # the same groups
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join(lines + [lines[1]]) + "\n")  # before: counted as a self-pair, 0.1462 -> 0.1344
    one_error(_diversity(outputs, dup), f"{dup}:{len(lines) + 1}", "listed twice (first on line 2)")
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0]] + lines[4:]) + "\n")
    one_error(_diversity(outputs, short), f"{short}:4", "expected 3 non-empty fields")


def test_cocosnet_pair_list_duplicates_bom_and_missing_list(tmp_path, shared_data):
    ade = shared_data.joinpath(*ADE)
    lines = (shared_data / "cocosnet_samples" / "data" / "ade20k_ref_test.txt").read_text().split()
    dup = tmp_path / "dup.txt"
    dup.write_text("\n".join(lines + [lines[0].split(",")[0] + ",ADE_train_00007201.jpg"]) + "\n")
    r = cli("data", "check", "ade20k", "--root", ade, "--pairs", dup)
    assert r.exit_code == 2 and f"{dup}:{len(lines) + 1}: query {lines[0].split(',')[0]} is listed again" in r.stdout
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    r = cli("data", "check", "ade20k", "--root", ade, "--pairs", bom)
    assert r.exit_code == 0 and "0 problems" in r.stdout, r.stdout
    # no pair list at all, and a missing label map: both are listed
    root = tmp_path / "ade"
    shutil.copytree(ade, root)
    (root / "validation" / "ADE_val_00001232.png").unlink()
    r = cli("data", "check", "ade20k", "--root", root)
    problems = [line for line in r.stdout.splitlines() if line.startswith("problem:")]
    assert r.exit_code == 2 and len(problems) == 2, r.stdout
    assert "no pair list" in problems[0] and "annotation not found" in problems[1] and "ADE_val_00001232" in problems[1]


def test_corrupt_or_foreign_history_is_one_line_and_never_changed(tmp_path):
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(bytes(range(256)) * 16)
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE runs(x)")
    con.execute("CREATE TABLE photos(y)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    for db in (corrupt, foreign):
        one_error(cli("report", "runs", "--db", db), str(db), "not an evalkit history database")
        one_error(cli("report", "compare", "run-a", "run-b", "--db", db), "not an evalkit history database")
    assert foreign.read_bytes() == before
    tables = {r[0] for r in sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"runs", "photos"}  # no measurements table was created in someone else's database
    one_error(cli("report", "runs", "--db", tmp_path / "none.sqlite"), "history database not found")
    assert not (tmp_path / "none.sqlite").exists()


def test_data_command_ranges(tmp_path):
    r = cli("data", "pairs", "ade20k", "--root", tmp_path, "--out", tmp_path / "p.txt", "--size", "0")
    assert r.exit_code == 2 and "--size" in r.stderr and "Traceback" not in r.stderr
    one_error(cli("data", "manipulation", "shapes", "--out", tmp_path / "m", "--n", "2", "--size", "32",
                  "--scale-min", "2", "--scale-max", "1"), "scale-min <= scale-max")
    one_error(cli("data", "manipulation", "shapes", "--out", tmp_path / "m", "--n", "2", "--size", "32",
                  "--max-shift", "-0.5"), "--max-shift -0.5")
    assert not (tmp_path / "m").exists()


def test_compare_names_the_missing_folder(tmp_path, outputs):
    results = tmp_path / "results.csv"
    assert cli("evaluate", "--generated", outputs / "reference__blur" / "images", "--real",
               outputs / "inputs" / "real", "--metrics", "psnr", "--dataset", "shapes", "--out", results).exit_code == 0
    one_error(cli("report", "compare", results, tmp_path / "missing/"), f"{tmp_path / 'missing'}", "no such folder")
