"""Evaluation presets (evalkit.protocols) against restatements of the official scripts, on the
real photographs of ../shared/data:

- the JPEG codec equals what ``torchvision.utils.save_image`` (the official test scripts'
  writer) puts in a ``.jpg`` file, byte for byte, and what PIL decodes from it;
- ``clean`` is bit-identical to no ``--protocol``;
- ``cocosnet2020`` equals the restated pipeline (save_image .jpg outputs, PIL-bicubic real
  images, pytorch-fid FID, PGGAN SWD at the script's 5 levels);
- ``rabit2022`` re-encodes the real set as its test.py saved gt/, keeps released .jpg outputs;
- ``unite2021`` reproduces UNITE's vgg_seman_relevance.py / vgg_style_relevance.py
  (restated below) on a random VGG saved in the scripts' vgg19_conv.pth layout;
- ``--weights-file`` loads strictly; ``report compare`` never compares two presets;
- ``evalkit protocols`` lists every preset with its citations.
Nothing here asserts a hard-coded metric value: every number is checked against an
independent computation of the same thing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.utils as vutils
from PIL import Image
from typer.testing import CliRunner

from evalkit import protocols
from evalkit.cli import app
from evalkit.errors import EvalkitError
from evalkit.files import load_image
from evalkit.metrics import evaluate_arrays, evaluate_folders, sliced_wasserstein
from evalkit.protocols.codec import Codec


def _ade(shared_data: Path) -> Path:
    return shared_data / "cocosnet_samples" / "imgs" / "ade20k"


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _save_like_test_py(image_hwc: np.ndarray, path: Path) -> Path:
    """What the official test scripts do with an output: ``(x + 1) / 2`` then save_image."""
    x = torch.from_numpy(image_hwc.copy()).permute(2, 0, 1).float() / 127.5 - 1
    vutils.save_image((x + 1) / 2, str(path), nrow=1, padding=0, normalize=False)
    return path


def _folder(path: Path, images: dict[str, np.ndarray], fmt: str = "png") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, im in images.items():
        Image.fromarray(im).save(path / f"{name}.{fmt}")
    return path


# -- the codec ---------------------------------------------------------------------------------
def test_jpeg_codec_equals_save_image_and_pil_byte_for_byte(shared_data, tmp_path):
    c = Codec("jpeg", 75, pil_default=True)
    for i, f in enumerate(sorted((_ade(shared_data) / "validation").glob("*.jpg"))):
        for im in (_rgb(f), np.asarray(Image.open(f).convert("RGB").resize((64, 48), Image.BICUBIC))):
            saved = _save_like_test_py(im, tmp_path / f"out{i}.jpg")
            assert saved.read_bytes() == c.encode(im)
            Image.fromarray(im).save(tmp_path / "pil.jpg")  # PIL save by name, no options
            assert (tmp_path / "pil.jpg").read_bytes() == c.encode(im)
            np.testing.assert_array_equal(c.roundtrip(im), load_image(saved))
            np.testing.assert_array_equal(c.roundtrip(im), np.asarray(Image.open(saved).convert("RGB")))
            assert c.wrote(saved)
    Image.fromarray(im).save(tmp_path / "q95.jpg", quality=95)
    Image.fromarray(im).save(tmp_path / "lossless.png")
    assert not c.wrote(tmp_path / "q95.jpg") and not c.wrote(tmp_path / "lossless.png")


def test_paper_presets_pin_what_the_scripts_did():
    # PGGAN API (sliced_wasserstein.py:98-101) with the image_shape cal_sliced_wasserstein.py fixes
    res, levels = 256, 0
    while res >= 16:
        levels, res = levels + 1, res // 2
    clean = protocols.get("clean")
    assert clean.families is None and clean.fid_mode is None and clean.swd_levels is None
    assert clean.generated_codec is clean.real_codec is clean.exemplar_codec is None and clean.real_resize is None
    for name in ("cocosnet2020", "unite2021", "rabit2022"):
        p = protocols.get(name)
        assert p.fid_mode == "legacy" and p.swd_levels == levels
        assert p.generated_codec == Codec("jpeg", 75, True) and p.real_resize == "generated-size"
        assert p.real_filter == "bicubic" and "fid" in p.families and "swd" in p.families
        assert all(pin.sources for pin in p.pins) and p.defects and p.unpinned
        assert (p.consistency == "unite2021") == (name == "unite2021")
    assert protocols.get("rabit2022").real_codec is not None  # test.py saves gt/*.jpg
    assert protocols.get("unite2021").exemplar_codec is not None  # test.py saves *_ref.jpg
    assert protocols.get("cocosnet2020").real_codec is None
    with pytest.raises(EvalkitError, match="unknown protocol"):
        protocols.get("cocosnet")


# -- clean is today's evaluation -------------------------------------------------------------------
def test_clean_preset_is_bit_identical_to_no_protocol(tmp_path, photos):
    gen, real = photos(4, 32), photos(4, 32, offset=4)
    g = _folder(tmp_path / "gen", {f"s{i}": im.transpose(1, 2, 0) for i, im in enumerate(gen)})
    r = _folder(tmp_path / "real", {f"s{i}": im.transpose(1, 2, 0) for i, im in enumerate(real)})
    kw = dict(weights="random", metrics=["fid", "swd", "lpips", "psnr", "ssim"], cache_dir=False, progress=False)
    plain = evaluate_folders(g, r, **kw)
    clean = evaluate_folders(g, r, protocol="clean", **kw)
    pd.testing.assert_frame_equal(plain, clean)
    assert set(plain["protocol"]) == {"clean"} and set(plain["image_format"]) == {"png"}


# -- cocosnet2020 against the restated pipeline -------------------------------------------------------
def test_cocosnet2020_equals_the_restated_official_pipeline(tmp_path, shared_data):
    ade = _ade(shared_data)
    val = sorted((ade / "validation").glob("*.jpg"))[:4]
    train = sorted((ade / "training").glob("*.jpg"))
    size = 128  # 5 fixed levels reach 8 px: the smallest side that holds a 7x7 neighbourhood is 112
    outputs = {f.stem: np.asarray(Image.open(t).convert("RGB").resize((size, size), Image.BICUBIC))
               for f, t in zip(val, train)}
    g = _folder(tmp_path / "gen", outputs)
    real = tmp_path / "real"
    real.mkdir()
    for f in val:  # the dataset's own .jpg files, of their own sizes
        shutil.copy(f, real / f.name)
    df = evaluate_folders(g, real, protocol="cocosnet2020", weights="random",
                          metrics=["fid", "swd"], cache_dir=False, progress=False)
    # Restatement: test.py --save_per_img writes <name>.jpg with save_image; the loader resizes
    # the real images with PIL bicubic to 256 (here: the outputs' size); pytorch-fid reads both.
    saved = [load_image(_save_like_test_py(outputs[f.stem], tmp_path / f"{f.stem}.jpg")) for f in val]
    reals = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)) for f in val]
    a = np.stack(saved).transpose(0, 3, 1, 2).copy()
    b = np.stack(reals).transpose(0, 3, 1, 2).copy()
    ref = evaluate_arrays(a, b, weights="random", fid_mode="legacy", metrics=["fid"], cache_dir=False)
    fid = df[df.metric == "FID"].iloc[0]
    assert fid["value"] == pytest.approx(ref[ref.metric == "FID"].iloc[0]["value"], rel=1e-9)
    assert (fid["variant"], fid["backbone"], fid["protocol"]) == ("legacy", "inception-v3-pytorch-fid", "cocosnet2020")
    assert fid["image_format"] == "png+jpeg-q75" and fid["real_resize"] == f"pil-bicubic-{size}"
    swd = dict(zip(df[df.metric.str.startswith("SWD")].metric, df[df.metric.str.startswith("SWD")].value))
    expected = sliced_wasserstein(a, b, seed=0, levels=5)
    assert set(swd) == {f"SWD@{size >> k}" for k in range(5)} | {"SWD"}  # 5 levels, not num_levels(128) = 4
    for k in range(5):
        assert swd[f"SWD@{size >> k}"] == pytest.approx(expected[f"SWDx1e3_{size >> k}"], rel=1e-12)
    assert set(df[df.metric.str.startswith("SWD")].variant) == {"pggan"}


def test_paper_presets_refuse_what_they_do_not_define(tmp_path, photos):
    gen, real = photos(3, 32), photos(3, 32, offset=3)
    df = evaluate_arrays(gen, real, weights="random", protocol="rabit2022", metrics=None, cache_dir=False)
    assert "not part of protocol rabit2022" in df.attrs["skipped"]["kid"]
    assert "112 px" in df.attrs["skipped"]["swd"]  # 5 levels need larger images than 32 px
    with pytest.raises(EvalkitError, match="not part of protocol cocosnet2020"):
        evaluate_arrays(gen, real, weights="random", protocol="cocosnet2020", metrics=["psnr"], cache_dir=False)
    with pytest.raises(EvalkitError, match="swd_shared_patches"):
        evaluate_arrays(gen, real, weights="random", protocol="unite2021", swd_shared_patches=True, cache_dir=False)


def test_rabit2022_reencodes_real_like_gt_folder_and_keeps_released_jpegs(tmp_path, shared_data):
    from evalkit.metrics.evaluate import load_inputs

    ade = _ade(shared_data)
    val = sorted((ade / "validation").glob("*.jpg"))
    size = 64
    out = tmp_path / "pre"
    out.mkdir()
    for f in val:  # released outputs: .jpg files written by test.py
        _save_like_test_py(np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.NEAREST)),
                           out / f"{f.stem}.jpg")
    inp = load_inputs(out, str(ade / "validation" / "*.jpg"), protocol="rabit2022")
    for i, f in enumerate(val):  # generated: read as is, never compressed twice
        np.testing.assert_array_equal(inp.generated[i].permute(1, 2, 0).numpy(), load_image(out / f"{f.stem}.jpg"))
        gt = _save_like_test_py(np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)),
                                tmp_path / "gt.jpg")  # test.py:65-67: the loader's image saved as gt/*.jpg
        np.testing.assert_array_equal(inp.real[i].permute(1, 2, 0).numpy(), load_image(gt))
    assert inp.image_format == "jpeg+jpeg-q75" and inp.real_resize == f"pil-bicubic-{size}"
    im = Image.open(out / f"{val[0].stem}.jpg")
    im.load()
    im.save(out / f"{val[0].stem}.jpg", quality=95)
    with pytest.raises(EvalkitError, match="quality"):
        load_inputs(out, str(ade / "validation" / "*.jpg"), protocol="rabit2022")


# -- unite2021: UNITE's consistency scripts, restated ----------------------------------------------
class ScriptVGG(nn.Module):
    """The scripts' VGG19_feature_color_torchversion (conv1_1 ... conv5_4, max pools, ReLUs)."""

    def __init__(self):
        super().__init__()
        cfg = [(1, 2, 3, 64), (2, 2, 64, 128), (3, 4, 128, 256), (4, 4, 256, 512), (5, 4, 512, 512)]
        self.names = []
        for b, n, cin, cout in cfg:
            for i in range(1, n + 1):
                setattr(self, f"conv{b}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, kernel_size=3, padding=1))
                self.names.append(f"{b}{i}")

    def forward(self, x, out_keys):
        out = {}
        for k, name in enumerate(self.names):
            if k and name[1] == "1":
                x = F.max_pool2d(x, 2, 2)
            x = F.relu(getattr(self, f"conv{name[0]}_{name[1]}")(x))
            out["r" + name] = x
        return [out[key] for key in out_keys]


def script_preprocess(tensor):
    """vgg_preprocess(vgg_normal_correct=False): RGB [0, 1] in, Caffe BGR 0..255 out."""
    bgr = torch.cat((tensor[:, 2:3], tensor[:, 1:2], tensor[:, 0:1]), dim=1)
    return (bgr - torch.Tensor([0.40760392, 0.45795686, 0.48501961]).view(1, 3, 1, 1)) * 255


def script_cal_feat_dist(feat_1, feat_2, label):
    """cal_feat_dist of vgg_seman_relevance.py (use_cos='cos')."""
    from sklearn.preprocessing import normalize

    value = 0
    for u in torch.unique(label):
        num = (label == u).sum().item()
        mask = torch.zeros_like(label)
        mask[label == u] = 1
        m1 = (feat_1 * mask.expand(feat_1.shape[0], -1, -1)).sum(-1).sum(-1) / num
        m2 = (feat_2 * mask.expand(feat_2.shape[0], -1, -1)).sum(-1).sum(-1) / num
        value += (normalize(m1.unsqueeze(0).numpy()) * normalize(m2.unsqueeze(0).numpy())).sum() * num / (
            mask.shape[-1] * mask.shape[-2])
    return value


def test_unite2021_consistency_reproduces_the_released_scripts(tmp_path, shared_data, monkeypatch):
    ade = _ade(shared_data)
    val = sorted((ade / "validation").glob("*.jpg"))[:4]
    train = sorted((ade / "training").glob("*.jpg"))
    size = 32  # relu5_2 at 2 x 2: enough for the computation, cheap on a CPU
    real = tmp_path / "real"
    real.mkdir()
    for f in val:  # ADE20K's layout: the image and its label map side by side
        shutil.copy(f, real / f.name)
        shutil.copy(f.with_suffix(".png"), real / f"{f.stem}.png")
    torch.manual_seed(0)
    vgg = ScriptVGG().eval()
    weights = tmp_path / "vgg19_conv.pth"
    torch.save(vgg.state_dict(), weights)  # a random VGG in the scripts' weights layout
    names = [f.stem for f in val]
    outputs = {n: np.asarray(Image.open(t).convert("RGB").resize((size, size), Image.BICUBIC))
               for n, t in zip(names, train)}
    refs = {n: np.asarray(Image.open(t).convert("RGB").resize((size, size), Image.BICUBIC))
            for n, t in zip(names, train[2:] + train[:2])}
    g = _folder(tmp_path / "gen", outputs)
    e = _folder(tmp_path / "ex", refs)
    kw = dict(exemplars=e, labels=str(real / "*.png"), protocol="unite2021", weights="random",
              metrics=["vgg"], cache_dir=False, progress=False)
    df = evaluate_folders(g, str(real / "*.jpg"), weights_files={"vgg19-caffe": str(weights)}, **kw)
    got = dict(zip(df.metric, df.value))

    # The scripts on the folders test.py writes: pre/*.jpg, the exemplars *_ref.jpg, gt at 256 (here 64).
    pre = {n: _rgb(_save_like_test_py(outputs[n], tmp_path / f"pre_{n}.jpg")) for n in names}
    ref = {n: _rgb(_save_like_test_py(refs[n], tmp_path / f"ref_{n}.jpg")) for n in names}
    gt = {n: np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)) for n, f in zip(names, val)}
    lab = {n: np.asarray(Image.open(f.with_suffix(".png")).resize((size, size), Image.NEAREST)).astype(np.float32)
           for n, f in zip(names, val)}
    sem = {"r42": 0.0, "r52": 0.0}
    m_all = v_all = 0
    cos = nn.CosineSimilarity(dim=1, eps=1e-6)
    with torch.no_grad():
        for i, n in enumerate(names):  # vgg_seman_relevance.py: 0..255 pixels, no / 255
            gt_t = torch.from_numpy(gt[n].astype(np.float32)).permute(2, 0, 1).view(1, 3, size, size)
            pre_t = torch.from_numpy(pre[n].astype(np.float32)).permute(2, 0, 1).view(1, 3, size, size)
            label = torch.from_numpy(lab[n]).view(1, size, size)
            gfs, pfs = vgg(script_preprocess(gt_t), list(sem)), vgg(script_preprocess(pre_t), list(sem))
            for layer, gf, pf in zip(sem, gfs, pfs):
                gf = F.interpolate(gf, size=(size, size), mode="nearest").squeeze()
                pf = F.interpolate(pf, size=(size, size), mode="nearest").squeeze()
                sem[layer] += script_cal_feat_dist(gf, pf, label) / len(names)
            # vgg_style_relevance.py: / 255, relu1_2, nms[i+1] (the last wraps around)
            pre_s = torch.from_numpy(pre[n].astype(np.float32)).permute(2, 0, 1).view(1, 3, size, size) / 255.0
            nxt = names[(i + 1) % len(names)]
            ref_s = torch.from_numpy(ref[nxt].astype(np.float32)).permute(2, 0, 1).view(1, 3, size, size) / 255.0
            pf = vgg(script_preprocess(pre_s), ["r12"])[0].view(1, 64, -1)
            rf = vgg(script_preprocess(ref_s), ["r12"])[0].view(1, 64, -1)
            v_all += cos(torch.var(pf, dim=2), torch.var(rf, dim=2)).item()
            m_all += cos(torch.mean(pf, dim=2), torch.mean(rf, dim=2)).item()
    assert got["semantic-relu4_2"] == pytest.approx(sem["r42"], abs=2e-5)
    assert got["semantic-relu5_2"] == pytest.approx(sem["r52"], abs=2e-5)
    assert got["style-mean"] == pytest.approx(m_all / len(names), abs=2e-5)
    assert got["style-std"] == pytest.approx(v_all / len(names), abs=2e-5)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert set(df.weights_sha256) == {f"unregistered:{sha}"} and set(df.backbone) == {"vgg19-caffe"}
    assert set(df.protocol) == {"unite2021"} and set(df.variant) == {"vgg19-caffe-unite2021"}

    # The same file as the registered vgg19_conv.pth: recorded by its own sha256 (none is published).
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    shutil.copy(weights, tmp_path / "w" / "vgg19_conv.pth")
    reg = evaluate_folders(g, str(real / "*.jpg"), **{**kw, "weights": "pretrained"})
    assert set(reg.weights_sha256) == {sha}
    np.testing.assert_array_equal(reg.value.to_numpy(), df.value.to_numpy())
    # Without label maps: style only, and a note says why semantic is missing.
    style = evaluate_folders(g, str(real / "*.jpg"), weights_files={"vgg19-caffe": str(weights)},
                             **{**kw, "labels": None})
    assert set(style.metric) == {"style-mean", "style-std"}


# -- --weights-file ----------------------------------------------------------------------------------
def test_weights_file_loads_strictly_and_is_marked_unregistered(tmp_path):
    import torchvision

    from evalkit.backbones import load_trunk, load_user_file
    from evalkit.features import VGG19Features

    torch.manual_seed(1)
    state = ScriptVGG().state_dict()
    bad = dict(state)
    del bad["conv5_4.weight"], bad["conv5_4.bias"]
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(EvalkitError) as err:
        load_user_file("vgg19-caffe", tmp_path / "bad.pth")
    msg = str(err.value)
    assert "missing keys conv5_4.bias, conv5_4.weight" in msg and "unexpected keys extra.weight" in msg
    shaped = dict(state, **{"conv1_1.weight": torch.zeros(64, 3, 5, 5)})
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(EvalkitError, match="shape mismatch conv1_1.weight"):
        load_user_file("vgg19-caffe", tmp_path / "shaped.pth")
    torch.save({"not": "a state dict"}, tmp_path / "junk.pth")
    with pytest.raises(EvalkitError, match="state dict"):
        load_user_file("vgg19-caffe", tmp_path / "junk.pth")
    # A torchvision-layout VGG19 for key vgg19: features.* loaded, the classifier ignored.
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])  # vgg19().features
    tv = {f"features.{k}": v for k, v in features.state_dict().items()} | {"classifier.6.bias": torch.zeros(1000)}
    torch.save(tv, tmp_path / "tv.pth")
    net = VGG19Features("random", weights_files={"vgg19": str(tmp_path / "tv.pth")})
    sha = hashlib.sha256((tmp_path / "tv.pth").read_bytes()).hexdigest()
    assert net.weights_id == f"unregistered:{sha}"
    for k, v in net.features.state_dict().items():
        assert torch.equal(v, tv[f"features.{k}"])
    _, wid = load_trunk("vgg19-caffe", "random", 0)
    assert wid == "random-init(seed=0)"


def test_weights_file_mismatch_on_the_cli_is_one_line_and_writes_nothing(tmp_path, photos):
    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    gen = photos(3, 32)
    g = _folder(tmp_path / "gen", {f"s{i}": im.transpose(1, 2, 0) for i, im in enumerate(gen)})
    res = CliRunner().invoke(app, ["evaluate", "--generated", str(g), "--real", str(g), "--exemplars", str(g),
                                   "--protocol", "unite2021", "--weights", "random", "--metrics", "vgg",
                                   "--weights-file", f"vgg19-caffe={tmp_path / 'bad.pth'}", "--no-cache",
                                   "--out", str(tmp_path / "out.csv")])
    assert res.exit_code == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "missing keys" in errors[0] and "vgg19-caffe" in errors[0]
    assert not (tmp_path / "out.csv").exists()
    res = CliRunner().invoke(app, ["evaluate", "--generated", str(g), "--real", str(g), "--weights-file", "nope=x"])
    assert res.exit_code == 2 and "unknown weights key" in res.stderr


# -- report compare never compares two presets ---------------------------------------------------------
def _table(protocol: str, value: float, run: str) -> pd.DataFrame:
    from evalkit.protocol import Protocol
    from evalkit.reports import results as R

    p = Protocol(resolution=299, resize="legacy-torch-bilinear", image_format="png", backbone="inception-v3-pytorch-fid",
                 weights_sha256="a" * 64, n_images=48, protocol=protocol)
    rows = pd.DataFrame([{"metric": "FID", "variant": "legacy", "value": value, "n": 48, **p.as_columns()}])
    return R.make_rows(rows, run_id=run, method="rabit", dataset="ade20k", split="test", seed=0)


def test_report_compare_skips_numbers_of_different_presets(tmp_path):
    from evalkit.reports import history
    from evalkit.reports import results as R

    base, head = _table("clean", 10.0, "base"), _table("cocosnet2020", 50.0, "head")
    R.write(base, tmp_path / "base.csv")
    R.write(head, tmp_path / "head.csv")
    verdict = history.gate(str(tmp_path / "base.csv"), str(tmp_path / "head.csv"))
    status = verdict.table.iloc[0]["status"]
    assert status == "skipped: protocol differs (preset clean → cocosnet2020)" and verdict.regressions == 0
    # the same through the history (its `protocol` column is the joined key, not the preset)
    db = tmp_path / "h.sqlite"
    history.record(db, history.RunInfo.current("base", "base", "cfg"), base)
    verdict = history.gate("base", str(tmp_path / "head.csv"), db=db)
    assert verdict.table.iloc[0]["status"].startswith("skipped: protocol differs (preset clean → cocosnet2020")
    # a table written before the column existed is `clean`, and is compared with clean numbers
    base.drop(columns=["protocol"]).to_csv(tmp_path / "old.csv", index=False)
    assert set(R.read(tmp_path / "old.csv")["protocol"]) == {"clean"}
    R.write(_table("clean", 50.0, "head"), tmp_path / "head_clean.csv")
    verdict = history.gate(str(tmp_path / "old.csv"), str(tmp_path / "head_clean.csv"))
    assert verdict.table.iloc[0]["status"] == "regression" and verdict.regressions == 1
    res = CliRunner().invoke(app, ["report", "compare", str(tmp_path / "base.csv"), str(tmp_path / "head.csv")])
    assert res.exit_code == 0 and "preset clean → cocosnet2020" in res.stdout


# -- the CLI and run configs ------------------------------------------------------------------------------
def test_protocols_command_lists_every_preset_with_citations():
    res = CliRunner().invoke(app, ["protocols"])
    assert res.exit_code == 0, res.output
    for name in protocols.names():
        assert f"{name}: " in res.stdout
    for cite in ("microsoft/CoCosNet test.py:46-48", "fnzhan/UNITE test.py:62-63", "fnzhan/RABIT test.py:61-63",
                 "fnzhan/UNITE util/vgg_style_relevance.py", "Utils/SWD/sliced_wasserstein.py:91-101", "issues/19"):
        assert cite in res.stdout, cite
    res = CliRunner().invoke(app, ["protocols", "--json"])
    data = json.loads(res.stdout)
    assert [p["name"] for p in data] == list(protocols.names())
    assert all(f["sources"] for p in data if p["name"] != "clean" for f in p["fields"])
    res = CliRunner().invoke(app, ["protocols", "unite2021"])
    assert res.exit_code == 0 and "off-by-one" in res.stdout and "cocosnet2020:" not in res.stdout
    res = CliRunner().invoke(app, ["protocols", "nope"])
    assert res.exit_code == 2 and res.stderr.count("error:") == 1


def test_evaluate_refuses_bad_protocol_options(tmp_path, photos):
    g = _folder(tmp_path / "gen", {f"s{i}": im.transpose(1, 2, 0) for i, im in enumerate(photos(3, 32))})
    for args, needle in ((["--protocol", "nope"], "unknown protocol"),
                         (["--protocol", "rabit2022", "--swd-shared-patches"], "swd_shared_patches"),
                         (["--protocol", "cocosnet2020", "--metrics", "kid"], "not part of protocol cocosnet2020"),
                         (["--protocol", "cocosnet2020", "--real-size", "64"], "--real-size 64")):
        res = CliRunner().invoke(app, ["evaluate", "--generated", str(g), "--real", str(g), "--weights", "random",
                                       "--no-cache", "--out", str(tmp_path / "o.csv"), *args])
        assert res.exit_code == 2, (args, res.output)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], (args, res.stderr)
        assert not (tmp_path / "o.csv").exists()


def test_run_config_takes_protocol_and_weights_files(tmp_path):
    from evalkit.config import ConfigError, parse_config

    (tmp_path / "v.pth").write_bytes(b"x")
    base = {"name": "p", "out": str(tmp_path / "runs"), "datasets": [{"name": "shapes", "size": 32, "n_train": 4,
                                                                       "n_test": 4}],
            "variants": [{"name": "reference/ground-truth"}]}
    cfg = parse_config({**base, "evaluation": {"protocol": "unite2021", "weights": "random",
                                               "weights_files": {"vgg19-caffe": str(tmp_path / "v.pth")}}})
    assert cfg.evaluation.protocol == "unite2021" and cfg.evaluation.check().fid_mode == "legacy"
    with pytest.raises(ConfigError, match="evaluation.protocol: unknown protocol 'paper'"):
        parse_config({**base, "evaluation": {"protocol": "paper"}})
    with pytest.raises(ConfigError, match="evaluation.weights_files"):
        parse_config({**base, "evaluation": {"weights_files": {"vgg19-caffe": str(tmp_path / "missing.pth")}}})
