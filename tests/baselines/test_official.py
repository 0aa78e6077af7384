"""Released checkpoints run by their own code (evalkit.baselines.official), through `evalkit infer
--official` and `evalkit official check`, on the real ADE20K samples of ../shared/data.

The released repositories cannot be cloned here, so each test writes a stand-in checkout with the
interface every official ``test.py`` uses (restated from NVlabs/SPADE, microsoft/CoCosNet(-v2) and
fnzhan/UNITE): ``options.test_options.TestOptions().parse()`` over ``sys.argv``,
``models.pix2pix_model.Pix2PixModel(opt)`` with ``netG`` (+ ``netCorr``), called as
``model(data, mode="inference")`` returning a tensor (SPADE) or a dict with ``fake_image`` and the
warped exemplar (``warp_out`` list / UNITE's ``warp_tmp``). Its networks are tiny 1x1 convolutions,
so the expected outputs are recomputed here from the saved weights, by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.baselines.official import RELEASED, official
from evalkit.errors import EvalkitError
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "journeys"))
from journey_helpers import cli, one_error_line  # noqa: E402

OPTIONS = '''
import argparse, sys
class TestOptions:
    def parse(self):
        p = argparse.ArgumentParser()
        for f in ("--name", "--checkpoints_dir", "--gpu_ids", "--nThreads", "--which_epoch"):
            p.add_argument(f)
        opt, rest = p.parse_known_args()
        opt.argv, opt.rest = list(sys.argv[1:]), rest
        return opt
'''

GENERATOR = '''
import torch
class Generator(torch.nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.conv = torch.nn.Conv2d(c_in, 3, 1)
    def forward(self, x):
        out = torch.tanh(self.conv(x))
{leftover}
        return out
'''

MODEL = '''
import torch
from models.networks.generator import Generator
class Pix2PixModel(torch.nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.netG = Generator({g_in})
        {corr}
    def forward(self, data, mode):
        assert mode == "inference"
        label = data["label"] / 150.0
        {body}
'''

BODIES = {
    "spade": "return self.netG(label.expand(-1, 3, -1, -1))",
    "cocosnet": ("warped = self.netCorr(data['ref'])\n"
                 "        fake = self.netG(torch.cat([warped, label], 1))\n"
                 "        return {'fake_image': fake, 'warp_out': [warped * 0, warped]}"),
    "unite": ("warped = self.netCorr(data['ref'])\n"
              "        assert data['label_ref'].dtype == torch.long\n"
              "        fake = self.netG(torch.cat([warped, label], 1))\n"
              "        return {'fake_image': fake, 'warp_tmp': warped}"),
}


def fake_checkout(root: Path, code: str, leftover: bool = False) -> Path:
    c = RELEASED[code]
    root.mkdir(parents=True, exist_ok=True)
    flavour = "spade" if code == "spade" else "unite" if code == "unite" else "cocosnet"
    for pkg in ("options", "models", "models/networks"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "options" / "test_options.py").write_text(OPTIONS)
    (root / "models" / "networks" / "generator.py").write_text(
        GENERATOR.format(leftover="        print (1/0)" if leftover else ""))
    corr = "self.netCorr = torch.nn.Conv2d(3, 3, 1)" if "Corr" in c.nets else ""
    (root / "models" / "pix2pix_model.py").write_text(
        MODEL.format(g_in=3 if code == "spade" else 4, corr=corr, body=BODIES[flavour]))
    for marker in c.markers:
        if not (root / marker).exists():
            (root / marker).write_text("")
    return root


def save_checkpoint(folder: Path, code: str, release: str, seed: int = 0) -> dict[str, dict]:
    """Random weights for the stand-in's networks in the released file names; returns them."""
    c, r = RELEASED[code], RELEASED[code].releases[release]
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    epoch = r.flags[list(r.flags).index("--which_epoch") + 1] if "--which_epoch" in r.flags else "latest"
    states = {}
    for net in c.nets:
        c_in = 3 if net == "Corr" or code == "spade" else 4
        state = {"conv.weight" if net == "G" else "weight": torch.randn(3, c_in, 1, 1, generator=g),
                 "conv.bias" if net == "G" else "bias": torch.randn(3, generator=g)}
        torch.save(state, folder / f"{epoch}_net_{net}.pth")
        states[net] = state
    return states


@pytest.fixture()
def ade(shared_data) -> Path:
    return shared_data / "cocosnet_samples" / "imgs" / "ade20k"


@pytest.fixture()
def ade_pairs(ade, tmp_path) -> Path:
    val = sorted(p.stem for p in (ade / "validation").glob("*.jpg"))
    train = sorted(p.name for p in (ade / "training").glob("*.jpg"))
    path = tmp_path / "pairs.txt"
    path.write_text("".join(f"{q}.jpg,{train[i % len(train)]}\n" for i, q in enumerate(val)))
    return path


def _infer(code, release, checkout, ck, ade, pairs, out, *extra, expect=0):
    return cli("infer", "--official", code, "--release", release, "--checkout", checkout, "--checkpoint", ck,
               "--dataset", "ade20k", "--root", ade, "--pairs", pairs, "--size", "32", "--n", "3",
               "--device", "cpu", "--out", out, *extra, code=expect)


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1).float()


def _conv(state: dict, x: torch.Tensor, prefix: str = "") -> torch.Tensor:
    return torch.nn.functional.conv2d(x, state[f"{prefix}weight"], state[f"{prefix}bias"])


def test_released_unite_runs_its_own_code_without_the_leftover_1_by_0(ade, ade_pairs, tmp_path):
    """The stand-in generator ends in UNITE's `print (1/0)`: imported as is it raises; through the
    wrapper that one statement is compiled as `pass`, the outputs are the released model's own
    (recomputed from the saved weights) and meta.json names the patched line, the flags and the
    checkpoint's sha256 manifest."""
    from evalkit.data import collate, get_dataset
    from evalkit.weights import file_sha256

    checkout = fake_checkout(tmp_path / "UNITE", "unite", leftover=True)
    ck = tmp_path / "checkpoints" / "ade20k"
    states = save_checkpoint(ck, "unite", "ade20k")
    import importlib.util
    spec = importlib.util.spec_from_file_location("unpatched", checkout / "models/networks/generator.py")
    unpatched = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unpatched)
    with pytest.raises(ZeroDivisionError):
        unpatched.Generator(4)(torch.zeros(1, 4, 2, 2))

    r = _infer("unite", "ade20k", checkout, ck, ade, ade_pairs, tmp_path / "out", "--json")
    vdir = Path(json.loads(r.stdout)["outputs"])
    meta = json.loads((vdir / "meta.json").read_text())
    line = 1 + (checkout / "models/networks/generator.py").read_text().split("\n").index("        print (1/0)")
    assert meta["patched"] == [f"models/networks/generator.py:{line}: `print (1/0)` → `pass`"]
    assert meta["checkpoint_sha256"] == {p.name: file_sha256(p) for p in sorted(ck.glob("*.pth"))}
    assert meta["flags"] == list(RELEASED["unite"].releases["ade20k"].flags[2:])  # the README's, less its --name
    assert "--use_coordconv" in meta["flags"] and "--correspondence" in meta["flags"]

    ds = get_dataset("ade20k", root=ade, split="test", size=32, n=3, pairs=ade_pairs)
    batch = collate([ds[i] for i in range(3)])
    warped = _conv(states["Corr"], batch.exemplar)
    expect = torch.tanh(_conv(states["G"], torch.cat([warped, batch.label[:, None].float() / 150], 1), "conv."))
    for i, name in enumerate(batch.name):
        got = _read(vdir / "images" / f"{name}.png")
        want = ((expect[i].clamp(-1, 1) + 1) * 127.5).round()
        assert (got - want).abs().max() <= 1, name
    assert (vdir / "warped").is_dir()


def test_released_spade_gets_its_label_remap_and_no_exemplar(ade, ade_pairs, tmp_path):
    """NVlabs/SPADE's ADE20K loader maps label l to l - 1 and 0 (unlabeled) to 150 before the model."""
    from evalkit.data import collate, get_dataset

    checkout = fake_checkout(tmp_path / "SPADE", "spade")
    ck = tmp_path / "checkpoints" / "ade20k_pretrained"
    states = save_checkpoint(ck, "spade", "ade20k")
    r = _infer("spade", "ade20k", checkout, ck, ade, ade_pairs, tmp_path / "out", "--json")
    vdir = Path(json.loads(r.stdout)["outputs"])
    ds = get_dataset("ade20k", root=ade, split="test", size=32, n=3, pairs=ade_pairs)
    batch = collate([ds[i] for i in range(3)])
    lab = batch.label.long() - 1
    lab[lab == -1] = 150
    expect = torch.tanh(_conv(states["G"], (lab[:, None].float() / 150).expand(-1, 3, -1, -1), "conv."))
    for i, name in enumerate(batch.name):
        want = ((expect[i] + 1) * 127.5).round()
        assert (_read(vdir / "images" / f"{name}.png") - want).abs().max() <= 1
    meta = json.loads((vdir / "meta.json").read_text())
    assert "label-only" in meta["notes"] and meta["patched"] is None


def test_official_check_and_every_missing_piece_is_one_line(ade, ade_pairs, tmp_path):
    checkout = fake_checkout(tmp_path / "CoCosNet", "cocosnet")
    ck = tmp_path / "checkpoints" / "ade20k"
    save_checkpoint(ck, "cocosnet", "ade20k")
    r = cli("official", "check", "--code", "cocosnet", "--release", "ade20k", "--checkout", checkout,
            "--checkpoint", ck, "--device", "cpu", "--json")
    meta = json.loads(r.stdout)
    assert sorted(meta["checkpoint_sha256"]) == ["90_net_Corr.pth", "90_net_G.pth"]
    assert "--which_epoch" in meta["flags"]

    def error(*args):
        return one_error_line(cli("official", "check", *args, "--device", "cpu", code=2))

    base = ["--code", "cocosnet", "--release", "ade20k", "--checkout", checkout, "--checkpoint", ck]
    assert "not a microsoft/CoCosNet checkout (missing models/pix2pix_model.py" in error(
        *base[:4], "--checkout", tmp_path, "--checkpoint", ck)
    assert "no released checkpoint 'cityscapes'" in error("--code", "cocosnet", "--release", "cityscapes",
                                                          *base[4:])
    assert "no released code 'pix2pixhd'" in error("--code", "pix2pixhd", *base[2:])
    (ck / "90_net_Corr.pth").unlink()
    assert "90_net_Corr.pth" in error(*base) and "download the released checkpoint" in error(*base)
    save_checkpoint(ck, "cocosnet", "ade20k")
    torch.save({"conv.weight": torch.zeros(3, 4, 1, 1), "conv.bias": torch.zeros(3), "extra": torch.zeros(1)},
               ck / "90_net_G.pth")
    line = error(*base)
    assert "90_net_G.pth does not match the model built with flags" in line and "unexpected ['extra']" in line
    (ck / "90_net_G.pth").write_bytes(b"not a checkpoint")
    assert "90_net_G.pth cannot be read as a PyTorch state dict" in error(*base)
    v2 = fake_checkout(tmp_path / "CoCosNet-v2", "cocosnet-v2")
    save_checkpoint(tmp_path / "v2", "cocosnet-v2", "deepfashionHD")
    assert "runs on CUDA only" in error("--code", "cocosnet-v2", "--release", "deepfashionHD", "--checkout", v2,
                                        "--checkpoint", tmp_path / "v2")
    no_release = cli("infer", "--official", "unite", "--checkout", checkout, "--checkpoint", ck, "--size", "32",
                     "--out", tmp_path / "o", code=2)
    assert "--official unite needs --release" in one_error_line(no_release)


def test_official_list_names_every_release_with_its_files():
    r = cli("official", "list", "--json")
    rows = {(x["code"], x["release"]): x for x in json.loads(r.stdout)}
    assert set(rows) >= {("spade", "ade20k"), ("cocosnet", "ade20k"), ("cocosnet-v2", "deepfashionHD"),
                         ("unite", "ade20k"), ("unite", "celebahqedge")}
    assert rows[("unite", "ade20k")]["files"] == ["latest_net_G.pth", "latest_net_Corr.pth"]
    assert rows[("spade", "ade20k")]["files"] == ["latest_net_G.pth"]
    assert rows[("cocosnet", "ade20k")]["files"] == ["90_net_G.pth", "90_net_Corr.pth"]
    with pytest.raises(EvalkitError, match="not a fnzhan/UNITE checkout"):
        official("unite", "ade20k", Path("/nonexistent"), Path("/nonexistent"))


def test_reproduction_card_attributes_each_step_to_protocol_fields(ade, ade_pairs, tmp_path):
    """published (UNITE Tab. 1, ADE20K FID) → the released checkpoint (evalkit inference, unite2021
    preset: its PNGs JPEG-encoded in memory) → the official script's saved .jpg images (same preset,
    read as they are) → the clean protocol: each Δ is
    the difference of the stages' own FIDs, and is attributed to n, the image format and the preset
    settings that differ."""
    checkout = fake_checkout(tmp_path / "UNITE", "unite", leftover=True)
    ck = tmp_path / "checkpoints" / "ade20k"
    save_checkpoint(ck, "unite", "ade20k")
    out = tmp_path / "out"
    vdir = Path(json.loads(_infer("unite", "ade20k", checkout, ck, ade, ade_pairs, out, "--json").stdout)["outputs"])
    jpgs = tmp_path / "released_images"
    jpgs.mkdir()
    for p in (vdir / "images").glob("*.png"):  # what the official test script saved
        Image.open(p).save(jpgs / f"{p.stem}.jpg", quality=75)
    tables = {}
    for label, images, protocol in (("unite-ckpt", vdir / "images", "unite2021"),
                                    ("unite-images", jpgs, "unite2021"),
                                    ("unite-clean", vdir / "images", "clean")):
        tables[label] = tmp_path / f"{label}.csv"
        cli("evaluate", "--generated", images, "--real", out / "inputs" / "real", "--metrics", "fid",
            "--weights", "random", "--protocol", protocol, "--no-cache", "--method", label, "--dataset", "ade20k",
            "--out", tables[label])
    r = cli("report", "reproduce", *tables.values(), "--paper-method", "UNITE", "--paper-dataset", "ADE20K",
            "--paper-metric", "FID",
            "--released-checkpoint", "unite-ckpt", "--released-images", "unite-images", "--clean", "unite-clean",
            "--out", tmp_path / "report", "--json")
    card = json.loads(r.stdout)
    stages = {s["stage"]: s for s in card["stages"]}
    assert list(stages) == ["published", "released checkpoint", "released images", "clean"]
    assert stages["published"]["value"] == 25.15
    import pandas as pd
    values = {label: float(pd.read_csv(path).query("metric == 'FID'")["value"].iloc[0]) for label, path in tables.items()}
    assert stages["released checkpoint"]["value"] == pytest.approx(values["unite-ckpt"])
    assert stages["clean"]["delta"] == pytest.approx(values["unite-clean"] - values["unite-images"])
    assert "n 2000→3" in stages["released checkpoint"]["attributed_to"]
    assert "preset" not in stages["released checkpoint"]["attributed_to"]  # the paper's own preset
    assert "image format png+jpeg-q75→jpeg" in stages["released images"]["attributed_to"]
    clean_step = stages["clean"]["attributed_to"]
    assert "preset unite2021→clean" in clean_step and "fid_mode legacy→None" in clean_step
    assert (tmp_path / "report" / "reproduction_UNITE_ADE20K_FID.md").is_file()
    bad = cli("report", "reproduce", *tables.values(), "--paper-method", "UNITE", "--paper-dataset", "ADE20K",
            "--paper-metric", "FID",
              "--clean", "nope", "--out", tmp_path / "r2", code=2)
    assert "no FID rows of variant 'nope'" in one_error_line(bad)
