"""The `outputs` wrapper and its shortcut to the official-CoCosNet loader (error paths)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.data import collate, get_dataset
from evalkit.errors import EvalkitError
from evalkit.methods.registry import build_translator
from evalkit.methods.training import infer


@pytest.fixture()
def saved_outputs(tmp_path):
    ds = get_dataset("shapes", split="test", size=32, n=3)
    folder = tmp_path / "ext"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(3):
        name = ds[i].name
        arrays[name] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arrays[name]).save(folder / f"{name}.png")
    return ds, folder, arrays


def test_outputs_are_matched_by_name_and_decoded_exactly(saved_outputs):
    ds, folder, arrays = saved_outputs
    t = build_translator("outputs", cond_channels=ds.cond_channels, folder=folder)
    batch = collate([ds[2], ds[0]])  # order of the batch, not of the folder
    out = t.translate(batch)
    for j, name in enumerate(batch.name):
        got = ((out.image[j].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        np.testing.assert_array_equal(got, arrays[name])
    assert t.protocol_meta["image_format"] == "png" and not t.trainable


def test_outputs_record_jpeg_protocol_and_round_trip_through_infer(saved_outputs, tmp_path):
    ds, folder, arrays = saved_outputs
    jfolder = tmp_path / "jpg"
    jfolder.mkdir()
    for name, arr in arrays.items():
        Image.fromarray(arr).save(jfolder / f"{name}.jpg", quality=90)
    t = build_translator("outputs", cond_channels=ds.cond_channels, folder=jfolder)
    assert t.protocol_meta["image_format"] == "jpeg"
    vdir = infer(t, ds, tmp_path / "out", progress=False)
    meta = json.loads((vdir / "meta.json").read_text())
    assert meta["image_format"] == "jpeg" and meta["written_format"] == "png" and meta["source_formats"] == ["jpeg"]
    decoded = np.asarray(Image.open(jfolder / f"{ds[0].name}.jpg").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(vdir / "images" / f"{ds[0].name}.png")), decoded)


def test_missing_or_wrong_size_output_is_a_clear_error(saved_outputs, tmp_path):
    ds, folder, _ = saved_outputs
    (folder / f"{ds[1].name}.png").unlink()
    t = build_translator("outputs", cond_channels=ds.cond_channels, folder=folder)
    with pytest.raises(EvalkitError, match=f"no output for sample '{ds[1].name}'"):
        t.translate(collate([ds[1]]))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / f"{ds[1].name}.png")
    t = build_translator("outputs", cond_channels=ds.cond_channels, folder=folder)
    with pytest.raises(EvalkitError, match="16x16 but the dataset is 32x32"):
        t.translate(collate([ds[1]]))
    with pytest.raises(EvalkitError, match="does not exist"):
        build_translator("outputs", cond_channels=3, folder=tmp_path / "nowhere")
    with pytest.raises(EvalkitError, match="needs folder"):
        build_translator("outputs", cond_channels=3)
    with pytest.raises(EvalkitError, match="cannot be trained"):
        build_translator("outputs", cond_channels=3, folder=folder).train_step(collate([ds[0]]))


def test_official_cocosnet_loader_errors_are_one_line(tmp_path):
    with pytest.raises(EvalkitError, match="not a microsoft/CoCosNet checkout"):
        build_translator("outputs", cond_channels=151, cocosnet_checkout=tmp_path, cocosnet_checkpoint=tmp_path,
                         cocosnet_dataset="ade20k")
    (tmp_path / "models").mkdir()
    (tmp_path / "options").mkdir()
    (tmp_path / "models" / "pix2pix_model.py").write_text("")
    (tmp_path / "options" / "test_options.py").write_text("")
    with pytest.raises(EvalkitError, match="90_net_G.pth"):
        build_translator("outputs", cond_channels=151, cocosnet_checkout=tmp_path, cocosnet_checkpoint=tmp_path / "ck",
                         cocosnet_dataset="ade20k")
    with pytest.raises(EvalkitError, match="microsoft/CoCosNet has no released checkpoint .shapes."):
        build_translator("outputs", cond_channels=3, cocosnet_checkout=tmp_path, cocosnet_checkpoint=tmp_path,
                         cocosnet_dataset="shapes")


def test_cli_infer_outputs(saved_outputs, tmp_path):
    ds, folder, _ = saved_outputs
    r = CliRunner().invoke(app, ["infer", "--variant", "outputs", "--folder", str(folder), "--size", "32", "--n", "3",
                                 "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["n_images"] == 3
    r = CliRunner().invoke(app, ["infer", "--variant", "outputs", "--folder", str(folder), "--size", "32", "--n", "4",
                                 "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "no output for sample" in r.stderr
    assert torch.is_tensor(collate([ds[0]]).image)
