"""Pair-list retrieval, manipulation sets and the CoCosNet transforms."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.data import get_dataset
from evalkit.data.manipulation import edit_object, pick_edit
from evalkit.data.pairs import choose_exemplar, read_pair_list
from evalkit.data.retrieval import top_k_cosine
from evalkit.data.shapes import rasterise, render
from evalkit.data.transforms import TransformParams, apply_pil, apply_tensor, get_params

runner = CliRunner()


def test_top_k_cosine_against_numpy():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(5, 7)), rng.normal(size=(9, 7))
    idx, sims = top_k_cosine(torch.from_numpy(q), torch.from_numpy(g), 3, exclude=np.array([2, -1, -1, -1, 8]))
    ref = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    ref[0, 2] = ref[4, 8] = -np.inf
    np.testing.assert_array_equal(idx, np.argsort(-ref, axis=1)[:, :3])
    np.testing.assert_allclose(sims, np.sort(ref, axis=1)[:, ::-1][:, :3])
    # a query that is its own nearest neighbour never retrieves itself
    idx, _ = top_k_cosine(torch.from_numpy(g), torch.from_numpy(g), 2, exclude=np.arange(9))
    assert not np.any(idx == np.arange(9)[:, None])


def test_choose_exemplar_cocosnet_probabilities():
    rng = np.random.default_rng(0)
    # CoCosNet: one draw p; p < 0.2 -> val[1] (hard), p < 0.7 -> val[0] (easy), else self-reference.
    # Retrieved lists hold more than two exemplars: the hard one is the second, never the last.
    picks = [choose_exemplar(["easy", "hard", "third"], "train", rng) for _ in range(4000)]
    freq = {k: picks.count(k) / 4000 for k in ("easy", "hard", "third", None)}
    assert abs(freq["hard"] - 0.2) < 0.03 and abs(freq["easy"] - 0.5) < 0.03 and abs(freq[None] - 0.3) < 0.03
    assert freq["third"] == 0
    assert choose_exemplar(["only"], "train", np.random.default_rng(1)) in ("only", None)
    assert choose_exemplar(["easy", "hard"], "test", rng) == "easy"


def test_pairs_cli_random_weights(shared_data, tmp_path):
    root = shared_data / "spade_coco_stuff" / "datasets" / "coco_stuff"
    out = tmp_path / "cocostuff_ref_test.txt"
    old = os.umask(0o022)
    try:
        result = runner.invoke(app, ["data", "pairs", "cocostuff", "--root", str(root), "--out", str(out),
                                     "--weights", "random", "--size", "32", "--k", "2", "--json"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # a plain file, not mkstemp's 0600
    assert json.loads(result.stdout)["queries"] == 8
    pairs = read_pair_list(out)
    train = {p.name for p in (root / "train_img").glob("*.jpg")}
    assert len(pairs) == 8 and all(len(v) == 2 and set(v) <= train for v in pairs.values())
    again = tmp_path / "again.txt"
    runner.invoke(app, ["data", "pairs", "cocostuff", "--root", str(root), "--out", str(again),
                        "--weights", "random", "--size", "32", "--k", "2"])
    assert again.read_text() == out.read_text()  # seeded: same list
    ds = get_dataset("cocostuff", root=root, size=32, pairs=out, n=2)
    assert ds[0].exemplar_name == pairs[ds.items[0].key][0][:-4]


def test_pairs_cli_missing_pretrained_weights(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path / "no-weights-here"))
    root = shared_data / "cocosnet_samples" / "imgs" / "ade20k"
    result = runner.invoke(app, ["data", "pairs", "ade20k", "--root", str(root), "--out", str(tmp_path / "p.txt")])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "vgg19-dcbb9e9d.pth" in lines[0] and "--weights random" in lines[0]
    assert not (tmp_path / "p.txt").exists()


def test_edit_object_hand_case():
    label = np.zeros((10, 10), np.int64)
    label[:, 5:] = 2  # background: class 0 on the left, class 2 on the right
    label[2:4, 2:4] = 7  # a 2x2 object inside class 0
    image = np.zeros((10, 10, 3), np.uint8)
    image[2:4, 2:4] = 200
    mask = label == 7
    new_label, new_image, _ = edit_object(label, image, mask, dx=4.0, dy=5.0, scale=1.0)
    expected = np.zeros((10, 10), np.int64)
    expected[:, 5:] = 2
    expected[7:9, 6:8] = 7  # moved by (+4, +5); the hole took the surrounding label 0
    assert np.array_equal(new_label, expected)
    assert np.all(new_image[7:9, 6:8] == 200) and new_image[2:4, 2:4].max() < 200
    picked = pick_edit(label, np.random.default_rng(0), ignore=(0, 2), min_area=0.01, max_area=0.1)
    assert picked is not None and picked[1].cls == 7 and picked[1].area == 4
    assert pick_edit(label, np.random.default_rng(0), ignore=(0, 2, 7)) is None


def test_manipulation_set_roundtrip(shared_data, tmp_path):
    root = shared_data / "cocosnet_samples" / "imgs" / "ade20k"
    out = tmp_path / "manip"
    old = os.umask(0o022)
    try:
        result = runner.invoke(app, ["data", "manipulation", "ade20k", "--root", str(root), "--out", str(out),
                                     "--size", "64", "--n", "2", "--json"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # a plain folder, not mkdtemp's 0700
    assert json.loads(result.stdout)["n"] == 2 and (out / "meta.json").is_file()
    ds = get_dataset("manipulation", root=out, size=64)
    s = ds[0]
    assert len(ds) == 2 and s.cond.shape == (151, 64, 64)
    # the exemplar is the original test image; the condition differs from it by the edited object only
    orig = get_dataset("ade20k", root=root, size=64)[0]
    assert s.name == orig.name
    assert np.abs(s.exemplar.numpy() - orig.image.numpy()).max() <= 2 / 255 + 1e-6  # PNG round trip
    assert torch.equal(s.exemplar_label, orig.label) and not torch.equal(s.label, orig.label)
    row = ds.rows[0]
    changed = s.label != orig.label
    assert set(s.label[changed].tolist()) | set(orig.label[changed].tolist()) >= {int(row["class"])}
    again = runner.invoke(app, ["data", "manipulation", "ade20k", "--root", str(root), "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.stderr
    (out / "exemplar" / f"{ds.rows[1]['name']}.png").unlink()
    checked = runner.invoke(app, ["data", "check", "manipulation", "--root", str(out)])
    assert checked.exit_code == 2 and f"image not found: {out / 'exemplar' / ds.rows[1]['name']}.png" in checked.stdout


def test_shapes_manipulation_is_exact():
    ds = get_dataset("shapes-manipulation", size=48, n=3, seed=0)
    for i in range(3):
        s = ds[i]
        sc, layout, edited, _ = ds._edited(i)
        assert torch.equal(s.exemplar_label, torch.from_numpy(rasterise(layout, 48)))
        assert torch.equal(s.label, torch.from_numpy(rasterise(edited, 48)))
        gt = render(rasterise(edited, 48), sc["query_style"]) * 2 - 1
        np.testing.assert_allclose(s.image.permute(1, 2, 0).numpy(), gt, atol=1e-6)
        assert not torch.equal(s.label, s.exemplar_label)


def test_transforms_hand_case():
    img = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4))
    p = TransformParams(load=4, size=2, x=1, y=2, flip=True)
    out = np.asarray(apply_pil(img, p, Image.NEAREST))
    assert out.tolist() == [[10, 9], [14, 13]]  # rows 2-3, cols 1-2, mirrored
    t = torch.arange(16).reshape(1, 4, 4)
    assert apply_tensor(t, p, "nearest")[0].tolist() == [[10, 9], [14, 13]]
    assert get_params(np.random.default_rng(0), "test", 256) == TransformParams(256, 256, 0, 0, False)
    tr = get_params(np.random.default_rng(0), "train", 256)
    assert tr.load == 286 and 0 <= tr.x <= 30 and 0 <= tr.y <= 30
