"""Journey 1: evaluate my outputs against a real dataset (the official ADE20K validation folder).

Before: every command here failed ("two images share the name 'ADE_val_00001232' (.jpg,
.png)", then "image ... is 763x512 but ... 640x429; all images of a set must share one size").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from journey_helpers import cli, one_error_line
from evalkit.images import load_image
from evalkit.protocol import NOT_COMPARABLE_NOTE

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the module: each image goes through Inception once."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture
def RANDOM(cache):
    return ["--weights", "random", "--cache-dir", str(cache)]


def _fid(result) -> float:
    return next(r["value"] for r in json.loads(result.stdout) if r["metric"] == "FID")


def test_a_folder_with_images_and_labels_of_mixed_sizes(ade, mine_ade, RANDOM):
    """The official validation/ folder: label maps skipped (and said so), mixed sizes through
    the 299 px resize, small-n note, KID-std n/a, random-backbone warning."""
    r = cli("evaluate", "--generated", mine_ade, "--real", ade / "validation", "--metrics", "fid,kid", *RANDOM)
    assert "skipped 6 label map(s) of the same name (ADE_val_00001232.png" in r.stderr
    assert "FID/KID from 6 generated images (< 2048)" in r.stderr and "compare only numbers computed at the same n" in r.stderr
    assert "KID-std n/a: one subset" in r.stderr
    kid_std = next(ln for ln in r.stdout.splitlines() if "KID-std" in ln)
    assert "n/a" in kid_std
    assert f"warning: {NOT_COMPARABLE_NOTE}" in r.stderr


def test_mixed_size_fid_equals_each_image_through_the_backbone_alone(ade, mine_ade, RANDOM):
    """Reference: every image through the same (seeded) Inception on its own, as clean-fid
    resizes each image; FID from those features (two real images: 683x512 and 256x256)."""
    from evalkit.features import InceptionFID
    from evalkit.metrics import fid_from_features

    gen, real = f"{mine_ade}/ADE_val_00001[23]*.png", f"{ade}/validation/ADE_val_00001[23]*.jpg"
    r = cli("evaluate", "--generated", gen, "--real", real, "--metrics", "fid", "--json", "--device", "cpu", *RANDOM)
    net = InceptionFID("clean", "random", 0, device="cpu")

    def feats(paths):
        return np.concatenate([net(torch.from_numpy(load_image(p).transpose(2, 0, 1).copy())[None]).numpy()
                               for p in paths])

    real_files = sorted((ade / "validation").glob("ADE_val_00001[23]*.jpg"))
    assert [Image.open(f).size for f in real_files] == [(683, 512), (256, 256)]
    expected = fid_from_features(feats(sorted(mine_ade.glob("ADE_val_00001[23]*.png"))), feats(real_files))
    assert _fid(r) == pytest.approx(expected, rel=1e-6)


def test_folder_glob_and_dataset_layout_name_the_same_images(ade, mine_ade, RANDOM):
    folder = _fid(cli("evaluate", "--generated", mine_ade, "--real", ade / "validation", "--metrics", "fid", "--json",
                      *RANDOM))
    glob = cli("evaluate", "--generated", mine_ade, "--real", f"{ade}/validation/*.jpg", "--metrics", "fid", "--json",
               *RANDOM)
    layout = cli("evaluate", "--generated", mine_ade, "--real", f"ade20k:{ade}", "--metrics", "fid", "--json", *RANDOM)
    assert _fid(glob) == folder and _fid(layout) == folder
    assert "label map" not in glob.stderr  # the pattern named only the images
    train = cli("evaluate", "--generated", mine_ade, "--real", f"ade20k:{ade}:train", "--metrics", "fid", "--json",
                *RANDOM)
    assert _fid(train) != folder
    # the dataset root itself holds no images: --recursive searches training/ and validation/
    flat = cli("evaluate", "--generated", mine_ade, "--real", ade, "--metrics", "fid", *RANDOM, code=2)
    assert "pass --recursive" in one_error_line(flat)
    deep = cli("evaluate", "--generated", mine_ade, "--real", ade, "--recursive", "--metrics", "fid", "--json", *RANDOM)
    assert "skipped 12 label map(s)" in deep.stderr
    assert _fid(deep) not in (folder, _fid(train))
    bad = cli("evaluate", "--generated", mine_ade, "--real", f"{ade}/validation/*.gif", *RANDOM, code=2)
    assert "no images match this pattern" in one_error_line(bad)


def test_real_size_brings_real_images_to_the_generated_size(ade, mine_ade, RANDOM, tmp_path):
    """Paired metrics need --real-size; the protocol records it; PSNR equals scikit-image's
    on the PIL-bicubic resized real images; no random-backbone warning for pixel metrics."""
    r = cli("evaluate", "--generated", mine_ade, "--real", ade / "validation", "--metrics", "psnr", *RANDOM, code=2)
    assert "--real-size 64" in one_error_line(r)
    out = tmp_path / "mine.csv"
    r = cli("evaluate", "--generated", mine_ade, "--real", ade / "validation", "--real-size", "64", "--metrics",
            "psnr", "--json", "--out", out, *RANDOM)
    row = json.loads(r.stdout)[0]
    assert row["real_resize"] == "pil-bicubic-64" and row["metric_variant"] == "skimage"
    expected = np.mean([peak_signal_noise_ratio(
        np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BICUBIC)), load_image(mine_ade / f"{f.stem}.png"),
        data_range=255) for f in sorted((ade / "validation").glob("*.jpg"))])
    assert row["value"] == pytest.approx(expected, rel=1e-12)
    assert "warning" not in r.stderr  # no random backbone was used
    assert "pil-bicubic-64" in out.read_text()


def test_fid_shortcut_prints_one_number(ade, mine_ade, RANDOM):
    full = _fid(cli("evaluate", "--generated", mine_ade, "--real", ade / "validation", "--metrics", "fid", "--json",
                    *RANDOM))
    r = cli("fid", mine_ade, ade / "validation", *RANDOM)
    assert r.stdout.strip() == f"FID: {full:.6g}"
