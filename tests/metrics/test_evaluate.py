"""One-pass evaluation: results table, feature cache (a re-run computes nothing), and the
CLI's handling of bad inputs (one line, exit 2, no output file)."""

from __future__ import annotations

import csv
import json
import os
import stat

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.features import InceptionFID, VGG19Features
from evalkit.metrics import (LPIPSAlex, density_coverage, evaluate_arrays, evaluate_folders, fid_from_features,
                            lpips_distance, precision_recall, sliced_wasserstein)
from evalkit.protocol import NOT_COMPARABLE_NOTE
from evalkit.reports import results as R


class Toy(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


@pytest.fixture(scope="module")
def nets():
    return {"lpips": LPIPSAlex("random", 0), "vgg": VGG19Features("random", 0)}


def _backbones(nets):
    return {"inception": InceptionFID(network=Toy(), network_id="toy"), **nets}


def _counts(bb):
    return {k: v.calls for k, v in bb.items()}


def test_evaluate_arrays_rows_agree_with_pure_functions(photos, nets, tmp_path):
    gen, real = photos(6, 32), photos(6, 32, offset=5)
    ex = photos(6, 32, offset=9)
    bb = _backbones(nets)
    df = evaluate_arrays(gen, real, exemplars_uint8=ex, groups=[[0, 1, 2], [3, 4, 5]], weights="random",
                         cache_dir=tmp_path, kid_subset_size=6, backbones=bb)
    v = df.set_index("metric")["value"]
    expected = {"FID", "KID", "KID-std", "precision", "recall", "density", "coverage", "SWD@32", "SWD@16", "SWD",
                "LPIPS-gt", "LPIPS-diversity", "semantic-relu4_2", "semantic-relu5_2", "style-mean", "style-std", "PSNR",
                "SSIM"}
    assert set(v.index) == expected
    feats = lambda x: bb["inception"](torch.from_numpy(x)).numpy()  # noqa: E731
    assert v["FID"] == pytest.approx(fid_from_features(feats(gen), feats(real)), rel=1e-9)
    pr, dc = precision_recall(feats(real), feats(gen), k=3), density_coverage(feats(real), feats(gen), k=5)
    assert {k: v[k] for k in (*pr, *dc)} == pytest.approx({**pr, **dc}, abs=1e-12)  # 6 a set: k + 1 for k = 5
    assert v["SWD"] == pytest.approx(sliced_wasserstein(gen, real)["SWDx1e3_avg"], rel=1e-12)
    assert v["LPIPS-gt"] == pytest.approx(lpips_distance(gen, real, model=nets["lpips"]).mean(), rel=1e-6)
    cols = list(df.columns)
    assert cols[:4] == ["metric", "variant", "value", "n"]
    assert {"resolution", "resize", "image_format", "backbone", "weights_sha256", "n_images", "library_versions",
            "evalkit_version", "comparable"} <= set(cols)
    lp = df[df.metric == "LPIPS-gt"].iloc[0]
    assert lp.weights_sha256 == "random-init(seed=0)" and not lp.comparable
    assert set(df[df.metric.str.startswith("SWD")].variant) == {"pggan"}


def test_swd_shared_patches_variant_is_recorded_and_cached_apart(photos, tmp_path):
    """The shared-patches SWD is a different number under its own variant name; a cache
    filled by the default (PGGAN) run must not answer for it, nor the other way round."""
    gen, real = photos(4, 32), photos(4, 32, offset=5)
    kw = dict(metrics=["swd"], cache_dir=tmp_path)
    default = evaluate_arrays(gen, real, **kw).set_index("metric")
    shared = evaluate_arrays(gen, real, swd_shared_patches=True, **kw).set_index("metric")
    assert set(default.variant) == {"pggan"} and set(shared.variant) == {"pggan-shared-patches"}
    assert default.loc["SWD", "value"] == pytest.approx(sliced_wasserstein(gen, real)["SWDx1e3_avg"], rel=1e-12)
    assert shared.loc["SWD", "value"] == pytest.approx(
        sliced_wasserstein(gen, real, shared_patches=True)["SWDx1e3_avg"], rel=1e-12)
    assert evaluate_arrays(gen, gen.copy(), swd_shared_patches=True, **kw)["value"].eq(0).all()
    assert evaluate_arrays(gen, gen.copy(), **kw)["value"].gt(0).all()


def test_rerun_hits_cache_and_resume_recomputes_only_missing(photos, nets, tmp_path):
    gen, real = photos(6, 32), photos(6, 32, offset=5)
    ex = photos(6, 32, offset=9)
    kw = dict(exemplars_uint8=ex, groups=[[0, 1, 2], [3, 4, 5]], weights="random", cache_dir=tmp_path, kid_subset_size=6)
    bb = _backbones(nets)
    first = evaluate_arrays(gen, real, backbones=bb, **kw)
    c1 = _counts(bb)
    assert all(c > 0 for c in c1.values())
    second = evaluate_arrays(gen, real, backbones=bb, **kw)
    assert _counts(bb) == c1  # nothing recomputed
    assert np.array_equal(first["value"].to_numpy(), second["value"].to_numpy())
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no cache temp file left
    # a run killed half-way: remove some entries, only those get recomputed
    entries = sorted(p for p in tmp_path.rglob("*.npy"))
    for p in entries[::3]:
        p.unlink()
    third = evaluate_arrays(gen, real, backbones=bb, **kw)
    assert np.allclose(first["value"].to_numpy(), third["value"].to_numpy(), rtol=1e-12)
    assert sum(_counts(bb).values()) > sum(c1.values())
    assert len(list(tmp_path.rglob("*.npy"))) == len(entries)


def test_lpips_gt_and_diversity_pass_each_image_through_the_trunk_once(photos, tmp_path):
    """Both LPIPS metrics in one call: every generated and real image enters AlexNet once
    (the issue's "each backbone once per image"), with the pure functions' values."""
    from collections import Counter

    from evalkit.images import content_hash
    from evalkit.metrics import lpips_diversity

    gen, real = photos(7, 32), photos(7, 32, offset=5)
    groups = [[0, 1, 2], [3, 4, 5]]  # image 6 is in no group
    net = LPIPSAlex("random", 0)
    seen = Counter()
    features = net.features

    def counting(x):
        seen.update(content_hash(im) for im in x)
        return features(x)

    net.features = counting
    df = evaluate_arrays(gen, real, groups=groups, metrics=["lpips", "lpips-diversity"], cache_dir=tmp_path,
                         backbones={"lpips": net}).set_index("metric")
    assert seen == Counter(content_hash(x) for x in [*gen, *real])  # (two crops of a square photo coincide)
    ref = LPIPSAlex("random", 0)
    assert df.loc["LPIPS-gt", "value"] == pytest.approx(lpips_distance(gen, real, model=ref).mean(), rel=1e-6)
    assert df.loc["LPIPS-diversity", "value"] == pytest.approx(
        lpips_diversity([gen[g] for g in groups], model=ref), rel=1e-6)
    seen.clear()
    evaluate_arrays(gen, real, groups=groups, metrics=["lpips", "lpips-diversity"], cache_dir=tmp_path,
                    backbones={"lpips": net})
    assert not seen  # cached: nothing recomputed


def test_cache_is_keyed_by_content_not_position(photos, tmp_path):
    gen, real = photos(4, 32), photos(4, 32, offset=5)
    inc = InceptionFID(network=Toy(), network_id="toy")
    evaluate_arrays(gen, real, metrics=["fid"], cache_dir=tmp_path, backbones={"inception": inc})
    calls = inc.calls
    evaluate_arrays(real[::-1].copy(), gen[::-1].copy(), metrics=["fid"], cache_dir=tmp_path, backbones={"inception": inc})
    assert inc.calls == calls


def _layout(tmp_path, photos, write_folder, n=4):
    gen, real, ex = photos(n, 32), photos(n, 32, offset=5), photos(n, 32, offset=9)
    names = [f"s{i}" for i in range(n)]
    g = write_folder(tmp_path / "gen", gen, names)
    r = write_folder(tmp_path / "real", real, names)
    e = write_folder(tmp_path / "ex", ex, names)
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "query", "exemplar_name"])
        for i, nm in enumerate(names):
            w.writerow([nm, f"q{i // 2}", f"ex{i}"])
    return g, r, e, pairs


def test_cli_json_and_csv(tmp_path, photos, write_folder, monkeypatch):
    g, r, e, pairs = _layout(tmp_path, photos, write_folder)
    out = tmp_path / "res.csv"
    res = CliRunner().invoke(app, ["evaluate", "--generated", str(g), "--real", str(r), "--exemplars", str(e),
                                   "--pairs", str(pairs), "--metrics", "swd,lpips,lpips-diversity", "--metrics", "psnr",
                                   "--weights", "random", "--json", "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {row["metric"] for row in rows} == {"SWD@32", "SWD@16", "SWD", "LPIPS-gt", "LPIPS-diversity", "PSNR"}
    assert out.is_file() and len(out.read_text().splitlines()) == len(rows) + 1
    assert NOT_COMPARABLE_NOTE in res.stderr
    div = next(row for row in rows if row["metric"] == "LPIPS-diversity")
    assert div["n"] == 2
    assert all(row["method"] == "gen" and row["variant"] == "gen" and row["dataset"] == "" for row in rows)
    assert {row["metric_variant"] for row in rows} == {"pggan", "alex-v0.1", "skimage"}
    # default metrics with names that do not pair: the paired metrics are skipped, loudly
    other = write_folder(tmp_path / "other", photos(4, 32, offset=5), ["x0", "x1", "x2", "x3"])
    monkeypatch.setattr("evalkit.features.InceptionFID",  # a cheap Inception stand-in (the registered builder reads it)
                        lambda *a, **k: InceptionFID(network=Toy(), network_id="toy"))
    res = CliRunner().invoke(app, ["evaluate", "--generated", str(g), "--real", str(other), "--weights", "random",
                                   "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert {row["metric"] for row in json.loads(res.stdout)} == {"FID", "KID", "KID-std", "SWD@32", "SWD@16", "SWD"}
    for metric in ("lpips", "psnr", "ssim", "vgg", "lpips-diversity"):
        assert f"note: skipped {metric}: needs" in res.stderr
    assert out.read_text().splitlines()[0] == ",".join(R.COLUMNS)  # the long results table
    # outputs layout: the method is the variant named in <variant_dir>/meta.json
    images = tmp_path / "OUT" / "rabit__ras" / "images"
    g.rename(images.parent.mkdir(parents=True) or images)
    (images.parent / "meta.json").write_text(json.dumps({"variant": "rabit/ras", "image_format": "png"}))
    res = CliRunner().invoke(app, ["evaluate", "--generated", str(images), "--real", str(r), "--metrics", "psnr",
                                   "--dataset", "ade20k", "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert [(row["method"], row["variant"], row["dataset"]) for row in json.loads(res.stdout)] == [
        ("rabit", "rabit/ras", "ade20k")]


def test_cli_table_json_and_csv_agree_on_real_photos(tmp_path, photos, write_folder, monkeypatch):
    """Table: every metric name whole and random-init rows marked comparable=no; --json at
    full precision equal to the CSV; the CSV is a plain file (umask mode, not mkstemp's 0600)."""
    g, r, _, _ = _layout(tmp_path, photos, write_folder)
    args = ["evaluate", "--generated", str(g), "--real", str(r), "--metrics", "lpips,psnr", "--weights", "random",
            "--cache-dir", str(tmp_path / "c")]
    old = os.umask(0o022)
    try:
        out = tmp_path / "res.csv"
        res = CliRunner().invoke(app, [*args, "--json", "--out", str(out)])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    rows = json.loads(res.stdout)
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["metric"] for row in rows] == [row["metric"] for row in table]
    assert all(float(t["value"]) == j["value"] for t, j in zip(table, rows))  # no 10-digit rounding
    assert all(len(str(j["value"]).replace(".", "").lstrip("0")) > 10 for j in rows if j["metric"] == "LPIPS-gt")
    shown = CliRunner().invoke(app, args, terminal_width=80)
    assert shown.exit_code == 0, shown.output
    lines = [ln for ln in shown.stdout.splitlines() if ln.startswith("│")]
    cells = {ln.split("│")[1].strip(): ln.split("│")[5].strip() for ln in lines if ln.split("│")[1].strip()}
    assert cells == {"LPIPS-gt": "no", "PSNR": "yes"}
    assert NOT_COMPARABLE_NOTE.split(" (")[0] in " ".join(shown.stdout.split())


def test_table_keeps_long_metric_names_whole_at_80_columns(capsys, monkeypatch):
    import pandas as pd

    from evalkit.commands.evaluate import print_table
    from evalkit.protocol import Protocol

    monkeypatch.setenv("COLUMNS", "80")
    rand = Protocol(64, "none", "png", "vgg19-torchvision", "random-init(seed=0)", 4).as_columns()
    none = Protocol(64, "none", "png", "none", "none", 4).as_columns()
    print_table(pd.DataFrame([{"metric": "semantic-relu4_2", "variant": "vgg19", "value": 0.5, "n": 4, **rand},
                              {"metric": "SWD@64", "variant": "pggan-shared-patches", "value": 12.0, "n": 4, **none}]))
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 80
    rows = {ln.split("│")[1].strip(): ln.split("│")[5].strip() for ln in out.splitlines()
            if ln.startswith("│") and ln.split("│")[1].strip()}
    assert rows == {"semantic-relu4_2": "no", "SWD@64": "yes"}


def test_folder_greyscale_and_rgba_are_converted(tmp_path, photos, write_folder):
    gen = photos(3, 32)
    g = write_folder(tmp_path / "g", gen)
    mixed = tmp_path / "m"
    mixed.mkdir()
    from PIL import Image

    Image.fromarray(gen[0].transpose(1, 2, 0)).convert("L").save(mixed / "img000.png")
    Image.fromarray(np.dstack([gen[1].transpose(1, 2, 0), np.full((32, 32), 9, np.uint8)]), "RGBA").save(mixed / "img001.png")
    Image.fromarray(gen[2].transpose(1, 2, 0)).save(mixed / "img002.png")
    df = evaluate_folders(mixed, g, metrics=["psnr"], cache_dir=False, progress=False).set_index("metric")
    grey = np.asarray(Image.fromarray(gen[0].transpose(1, 2, 0)).convert("L"), dtype=np.float64)
    mse0 = ((gen[0].transpose(1, 2, 0) - grey[..., None]) ** 2).mean()
    expected = np.mean([10 * np.log10(255 ** 2 / mse0), np.inf, np.inf])
    assert df.loc["PSNR", "value"] == expected


def _bad(tmp_path, args):
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["evaluate", *args, "--out", str(out), "--no-cache"])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len([ln for ln in err if ln.startswith("error:")]) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))
    return err[-1]


def test_cli_bad_inputs(tmp_path, photos, write_folder, monkeypatch):
    g, r, e, pairs = _layout(tmp_path, photos, write_folder)
    base = ["--generated", str(g), "--real", str(r), "--weights", "random"]
    # truncated file
    bad = tmp_path / "bad"
    write_folder(bad, photos(3, 32))
    data = (bad / "img001.png").read_bytes()
    (bad / "img001.png").write_bytes(data[:40])
    assert "img001.png" in _bad(tmp_path, ["--generated", str(bad), "--real", str(r), "--weights", "random"])
    # mixed sizes: the paired metrics cannot apply (FID/KID would)
    mixed = write_folder(tmp_path / "mixed", photos(2, 32))
    write_folder(mixed, photos(1, 48), ["big"])
    assert "mixed sizes" in _bad(tmp_path, ["--generated", str(mixed), "--real", str(r), "--metrics", "psnr"])
    # empty folder
    (tmp_path / "empty").mkdir()
    assert "no images" in _bad(tmp_path, ["--generated", str(tmp_path / "empty"), "--real", str(r)])
    # N < 2 for FID
    one = write_folder(tmp_path / "one", photos(1, 32))
    assert "at least 2" in _bad(tmp_path, ["--generated", str(one), "--real", str(r), "--metrics", "fid"])
    # generated / real count mismatch for SWD
    three = write_folder(tmp_path / "three", photos(3, 32), ["a", "b", "c"])
    assert "SWD" in _bad(tmp_path, ["--generated", str(three), "--real", str(r), "--metrics", "swd"])
    # missing exemplar named in the pair list
    (e / "s2.png").unlink()
    assert "s2" in _bad(tmp_path, [*base, "--exemplars", str(e), "--pairs", str(pairs)])
    # missing weights (pretrained, empty weights folder)
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path / "noweights"))
    msg = _bad(tmp_path, ["--generated", str(g), "--real", str(r), "--metrics", "fid"])
    assert "inception-2015-12-05.pt" in msg and "evalkit weights import" in msg
    assert f"expected at {tmp_path / 'noweights' / 'inception-2015-12-05.pt'}" in msg  # where it goes
    msg = _bad(tmp_path, ["--generated", str(g), "--real", str(r), "--metrics", "lpips"])
    assert "alexnet-owt-7be5be79.pth" in msg


@pytest.mark.parametrize("mode", ["clean", "legacy"])
def test_random_inception_is_seeded_2048d(photos, mode):
    x = torch.from_numpy(photos(2, 32))
    a = InceptionFID(mode, "random", seed=3)
    fa = a(x)
    assert fa.shape == (2, 2048) and torch.isfinite(fa).all()
    assert torch.equal(fa, InceptionFID(mode, "random", seed=3)(x))
    assert a.weights_id == "random-init(seed=3)"


def test_legacy_pretrained_matches_cleanfid_pytorch_inception(photos, tmp_path, monkeypatch):
    """A pytorch-fid-layout state dict in the cache gives the same features as clean-fid's
    own pytorch-fid port (legacy_pytorch mode), which loads that file from torch hub."""
    import dataclasses

    from cleanfid.features import feature_extractor
    from cleanfid.resize import build_resizer

    from evalkit import weights as W
    from evalkit.backbones import fid_inception_v3

    ck = tmp_path / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    path = ck / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(fid_inception_v3(seed=4).state_dict(), path)
    entry = dataclasses.replace(W.REGISTRY["inception-pytorch-fid"], sha256=W.file_sha256(path))
    monkeypatch.setitem(W.REGISTRY, "inception-pytorch-fid", entry)
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(ck))
    ours = InceptionFID("legacy", "pretrained")
    x = photos(2, 32)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        ref_fn = feature_extractor("pytorch_inception", device=torch.device("cpu"), use_dataparallel=False)
    finally:
        torch.hub.set_dir(old)
    resize = build_resizer("legacy_pytorch")
    batch = torch.stack([torch.from_numpy(resize(im.transpose(1, 2, 0))).permute(2, 0, 1) for im in x])
    with torch.no_grad():
        ref = ref_fn(batch)
    got = ours(torch.from_numpy(x))
    assert ours.weights_id == entry.sha256
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


KILL_SCRIPT = r'''
import os, signal, sys
import numpy as np, torch
from evalkit.features import InceptionFID
from evalkit.metrics import evaluate_arrays

class KillOnSecondBatch(torch.nn.Module):
    calls = 0
    def forward(self, x):
        KillOnSecondBatch.calls += 1
        if KillOnSecondBatch.calls == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

rng = np.random.default_rng(0)
gen = rng.integers(0, 256, (10, 3, 16, 16), dtype=np.uint8)
real = rng.integers(0, 256, (10, 3, 16, 16), dtype=np.uint8)
np.save(sys.argv[2], np.stack([gen, real]))
evaluate_arrays(gen, real, metrics=["fid"], cache_dir=sys.argv[1],
                backbones={"inception": InceptionFID(network=KillOnSecondBatch(), network_id="toy")})
'''


def test_resume_after_kill_9_recomputes_only_unfinished(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "killme.py"
    script.write_text(KILL_SCRIPT)
    cache, arrays = tmp_path / "cache", tmp_path / "arrays.npy"
    proc = subprocess.run([sys.executable, str(script), str(cache), str(arrays)], capture_output=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    assert len(list(cache.rglob("*.npy"))) == 16  # the first batch of 16 images finished
    gen, real = np.load(arrays)
    inc = InceptionFID(network=Toy(), network_id="toy")
    df = evaluate_arrays(gen, real, metrics=["fid"], cache_dir=cache, backbones={"inception": inc})
    assert inc.calls == 1  # only the 4 unfinished images, in one batch
    fresh = evaluate_arrays(gen, real, metrics=["fid"], cache_dir=False,
                            backbones={"inception": InceptionFID(network=Toy(), network_id="toy")})
    assert df["value"].iloc[0] == fresh["value"].iloc[0]


def test_device_resolution():
    from evalkit.errors import EvalkitError
    from evalkit.features import resolve_device

    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(EvalkitError, match="--device"):
        resolve_device("gpu-please")


def test_a_label_map_beside_its_image_is_skipped_two_images_of_one_name_are_an_error(tmp_path, photos):
    from PIL import Image

    from evalkit.errors import EvalkitError
    from evalkit.images import resolve_images

    a, b = photos(2, 32).transpose(0, 2, 3, 1)
    Image.fromarray(a).save(tmp_path / "x.jpg")
    Image.fromarray(a[..., 0]).save(tmp_path / "x.png")  # single channel: a label map
    Image.fromarray(b).save(tmp_path / "y.png")
    found = resolve_images(tmp_path)
    assert found.names == ("x", "y") and found.files == (tmp_path / "x.jpg", tmp_path / "y.png")
    assert found.notes == (f"{tmp_path}: took the images, skipped 1 label map(s) of the same name (x.png)",)
    Image.fromarray(b).save(tmp_path / "y.jpg")  # two RGB images named y
    with pytest.raises(EvalkitError, match="several images share the name 'y' \\(y.jpg, y.png\\)"):
        resolve_images(tmp_path)
    (tmp_path / "sub").mkdir()
    Image.fromarray(b).save(tmp_path / "sub" / "z.png")
    assert resolve_images(f"{tmp_path}/*.png").names == ("x", "y")  # the glob picks one kind
    assert resolve_images(f"{tmp_path}/**/*.png").names == ("x", "y", "z")


def test_pixel_metrics_alone_never_import_torchvision(tmp_path):
    """`evaluate --metrics swd,psnr,ssim` needs no backbone, so it never pays torchvision's import
    (1.5 s: its `ops` pull in torch._dynamo); the metrics that need it do import it."""
    import subprocess
    import sys

    from PIL import Image

    rng = np.random.default_rng(0)
    for side in ("gen", "real"):
        (tmp_path / side).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / side / f"{i}.png")
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from evalkit.cli import app\n"
            "result = CliRunner().invoke(app, ['evaluate', '--generated', sys.argv[1], '--real', sys.argv[2],"
            " '--metrics', sys.argv[3], '--weights', 'random', '--no-cache', '--json'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print('torchvision' in sys.modules)\n")

    def imports_torchvision(metrics: str) -> bool:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "gen"), str(tmp_path / "real"), metrics],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path,
                             env={**os.environ, "EVALKIT_CACHE": str(tmp_path / "cache")})
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip().splitlines()[-1] == "True"

    assert not imports_torchvision("swd,psnr,ssim")
    assert imports_torchvision("fid")
