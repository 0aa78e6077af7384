"""Image decoding, quantisation and clean resize vs clean-fid; the weights registry; the
feature cache's writes."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest
import torch
from cleanfid.resize import build_resizer
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit import weights as W
from evalkit.errors import EvalkitError
from evalkit.features import FeatureCache
from evalkit.images import clean_resize, clean_resize_batch, load_folder, load_image, to_uint8


def test_load_image_converts_grey_rgba_palette(tmp_path, photos):
    rgb = photos(1, 32)[0].transpose(1, 2, 0)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == (32, 32, 3) and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == np.asarray(Image.fromarray(rgb).convert("L"))).all()
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped, colours kept
    assert np.array_equal(load_image(tmp_path / "pal.png"), np.asarray(Image.open(tmp_path / "pal.png").convert("RGB")))


def test_truncated_and_corrupt_files_name_the_file(tmp_path, photos):
    Image.fromarray(photos(1, 64)[0].transpose(1, 2, 0)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    for name in ("trunc.png", "junk.jpg"):
        with pytest.raises(EvalkitError, match=name):
            load_image(tmp_path / name)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(EvalkitError, match="no images"):
        load_folder(tmp_path)


def test_to_uint8_rounds_and_clamps_like_save_image():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 0.99, 1.0, 2.0])
    expected = ((x + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # torchvision.utils.save_image
    assert torch.equal(to_uint8(x), expected)
    assert to_uint8(x).tolist() == [0, 0, 0, 128, 191, 254, 255, 255]
    assert np.array_equal(to_uint8(x.numpy()), expected.numpy())


@pytest.mark.parametrize("size", [(48, 48), (64, 40), (300, 260)])
def test_clean_resize_matches_cleanfid(photos, size):
    im = np.asarray(Image.fromarray(photos(1, 64)[0].transpose(1, 2, 0)).resize(size[::-1], Image.BICUBIC))
    ref = build_resizer("clean")(im)
    assert np.array_equal(clean_resize(im, 299), ref)
    batch = clean_resize_batch(torch.from_numpy(im).permute(2, 0, 1)[None], 299)[0].permute(1, 2, 0).numpy()
    assert np.abs(batch - ref).max() <= 2e-3  # on the 0..255 scale


def test_weights_registry_hashes_are_wellformed():
    for entry in W.REGISTRY.values():
        if not entry.digest_published:  # vgg19_conv.pth: no digest anywhere; recognised by name + layout
            assert entry.sha256 == "" and entry.layout and entry.manual_download and entry.url.startswith("https://")
            continue
        assert entry.sha256 and all(c in "0123456789abcdef" for c in entry.sha256)
        assert len(entry.sha256) == 64 or (entry.prefix_only and entry.sha256 in entry.filename)
        assert entry.url.endswith(entry.filename)


def test_weights_import_verify_and_missing(tmp_path, monkeypatch):
    import dataclasses

    cache = tmp_path / "cache"
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(cache))
    payload = b"fake vgg weights"
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(W.REGISTRY, "vgg19", dataclasses.replace(W.REGISTRY["vgg19"], sha256=digest[:8]))
    src = tmp_path / "download.bin"
    src.write_bytes(payload)
    runner = CliRunner()
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["weights", "import", str(src)])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (cache / "vgg19-dcbb9e9d.pth").read_bytes() == payload
    assert stat.S_IMODE((cache / "vgg19-dcbb9e9d.pth").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in cache.iterdir()] == ["vgg19-dcbb9e9d.pth"]  # no temp file left behind
    path, full = W.require("vgg19")
    assert full == digest
    res = runner.invoke(app, ["weights", "verify", "--json"])
    assert res.exit_code == 2  # the other files are missing
    (cache / "vgg19-dcbb9e9d.pth").write_bytes(b"corrupted")
    with pytest.raises(EvalkitError, match="corrupt"):
        W.require("vgg19")
    (tmp_path / "other.bin").write_bytes(b"unrelated")
    res = runner.invoke(app, ["weights", "import", str(tmp_path / "other.bin")])
    assert res.exit_code == 2 and "matches none" in res.output


def test_fetch_downloads_through_temp_file_and_checks_sha256(tmp_path, monkeypatch):
    import dataclasses

    src = tmp_path / "server" / "alexnet-owt-7be5be79.pth"
    src.parent.mkdir()
    src.write_bytes(b"alexnet bytes" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(cache))
    good = dataclasses.replace(W.REGISTRY["alexnet"], url=src.as_uri(), sha256=digest[:8])
    monkeypatch.setitem(W.REGISTRY, "alexnet", good)
    assert W.fetch(["alexnet"], progress=False) == [cache / "alexnet-owt-7be5be79.pth"]
    assert (cache / "alexnet-owt-7be5be79.pth").read_bytes() == src.read_bytes()
    (cache / "alexnet-owt-7be5be79.pth").unlink()
    monkeypatch.setitem(W.REGISTRY, "alexnet", dataclasses.replace(good, sha256="00000000"))
    res = CliRunner().invoke(app, ["weights", "fetch", "alexnet"])
    assert res.exit_code == 2 and "expected 00000000" in res.output
    assert list(cache.iterdir()) == []  # nothing installed, no .part left behind
    monkeypatch.setitem(W.REGISTRY, "alexnet", dataclasses.replace(good, url=(tmp_path / "nope.pth").as_uri()))
    res = CliRunner().invoke(app, ["weights", "fetch", "alexnet"])
    assert res.exit_code == 2 and "evalkit weights import" in res.output


def test_feature_cache_writes_plain_files_atomically(tmp_path):
    cache = FeatureCache(tmp_path)
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    old = os.umask(0o022)
    try:
        cache.put("ns", "abcdef", value)
    finally:
        os.umask(old)
    path = tmp_path / "ns" / "ab" / "abcdef.npy"
    assert np.array_equal(np.load(path), value) and np.array_equal(cache.get("ns", "abcdef"), value)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600

    class Unwritable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        cache.put("ns", "abcdef", Unwritable())
    assert [p.name for p in path.parent.iterdir()] == ["abcdef.npy"]  # old entry kept, no temp file
    assert np.array_equal(cache.get("ns", "abcdef"), value)
