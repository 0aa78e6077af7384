"""Journey 8: evaluate my outputs against reference statistics instead of the real images.

`evalkit stats build` embeds the ADE20K validation images once (the dataset layout
`ade20k:ROOT:test`, resized to 64 px first, the seeded random Inception); `evalkit evaluate
--real-stats` must then give the FID, KID and precision/recall/density/coverage that
`evaluate --real` gives on the images themselves (the reference), and refuse, with one
line and nothing written, a file built under another protocol, a foreign or corrupt file.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from journey_helpers import cli, one_error_line

CPU = ["--no-cache", "--device", "cpu"]
KID = ["--kid-subset-size", "4", "--kid-subsets", "5"]  # subsets drawn from the real set: its order must hold


@pytest.fixture(scope="module")
def built(ade, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats") / "ade-val.npz"
    r = cli("stats", "build", "--real", f"ade20k:{ade}:test", "--real-size", "64", "--out", out, "--weights",
            "random", *CPU, "--json")
    return out, json.loads(r.stdout), r.stderr


def test_the_file_names_its_images_and_its_protocol(built, ade):
    out, summary, stderr = built
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and summary["n_images"] == 6
    p = summary["protocol"]
    assert (p["metric_variant"], p["backbone"], p["weights_sha256"], p["real_resize"], p["image_format"]) == \
           ("clean", "inception-v3-torchvision", "random-init(seed=0)", "pil-bicubic-64", "jpeg")
    assert "warning: " in stderr and "random-initialised" in stderr
    from evalkit.metrics import stats

    ref = stats.load(out)
    files = sorted((ade / "validation").glob("*.jpg"))
    assert ref.manifest == {f.stem: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    f64 = ref.features.astype(np.float64)
    assert ref.features.shape == (6, 2048)
    np.testing.assert_allclose(ref.mu, f64.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref.sigma, np.cov(f64, rowvar=False), rtol=0, atol=1e-9)


def test_stats_give_the_numbers_of_the_folder(built, ade, mine_ade):
    out = built[0]
    folder = cli("evaluate", "--generated", mine_ade, "--real", f"ade20k:{ade}:test", "--real-size", "64",
                 "--metrics", "fid,kid,prdc", "--weights", "random", *KID, *CPU, "--json")
    from_stats = cli("evaluate", "--generated", mine_ade, "--real-stats", out, "--real-size", "64", "--weights",
                     "random", *KID, *CPU, "--json")  # all metrics that apply
    a, b = json.loads(folder.stdout), json.loads(from_stats.stdout)
    assert [r["metric"] for r in b] == [r["metric"] for r in a] == ["FID", "KID", "KID-std", "precision", "recall",
                                                                    "density", "coverage"]
    for ra, rb in zip(a, b):
        assert abs(ra["value"] - rb["value"]) <= 1e-9, (ra["metric"], ra["value"], rb["value"])
        assert {k: v for k, v in ra.items() if k != "value"} == {k: v for k, v in rb.items() if k != "value"}
    assert a[0]["value"] > 0 and 0 < a[3]["value"] <= 1
    for metric in ("lpips", "psnr", "ssim", "swd"):
        assert f"note: skipped {metric}: needs the real images; --real-stats holds only" in from_stats.stderr
    assert f"real set: 6 images' Inception features from {out}" in from_stats.stderr


@pytest.mark.parametrize("args,field", [
    (["--weights", "random", "--real-size", "64", "--fid-mode", "legacy"], "metric_variant is 'clean' in the file, "
                                                                           "'legacy' here"),
    (["--weights", "pretrained", "--real-size", "64"], "weights_sha256 is 'random-init(seed=0)' in the file, "
                                                       "'pretrained' here"),
    (["--weights", "random", "--real-size", "64", "--seed", "1"], "weights_sha256 is 'random-init(seed=0)'"),
    (["--weights", "random"], "real_resize is 'pil-bicubic-64' in the file, 'none' here"),
], ids=["fid-mode", "pretrained", "seed", "real-size"])
def test_a_file_of_another_protocol_is_refused(built, mine_ade, tmp_path, monkeypatch, args, field):
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path / "no-weights"))  # refused before any weights are looked for
    res = tmp_path / "res.csv"
    r = cli("evaluate", "--generated", mine_ade, "--real-stats", built[0], *args, *CPU, "--out", res, code=2)
    line = one_error_line(r)
    assert field in line and str(built[0]) in line and "evalkit stats build" in line
    assert not res.exists() and r.stdout == ""


def test_bad_files_and_bad_requests_are_one_line(built, ade, mine_ade, tmp_path):
    garbage, foreign = tmp_path / "garbage.npz", tmp_path / "foreign.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip" * 4)
    np.savez(foreign, mu=np.zeros(3), sigma=np.eye(3))  # pytorch-fid / clean-fid statistics
    cases = [
        (["--real-stats", garbage], "unreadable reference-statistics file"),
        (["--real-stats", foreign], "not an evalkit reference-statistics file (entries: mu, sigma"),
        (["--real-stats", tmp_path / "missing.npz"], "not found"),
        (["--real-stats", built[0], "--real-size", "64", "--metrics", "psnr"], "needs the real images"),
        (["--real-stats", built[0], "--real", ade / "validation"], "not both"),
        ([], "no real set"),
    ]
    for args, message in cases:
        r = cli("evaluate", "--generated", mine_ade, *args, "--weights", "random", *CPU, code=2)
        assert message in one_error_line(r), (args, r.stderr)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes((mine_ade / "ADE_val_00001232.png").read_bytes())
    (broken / "b.png").write_bytes((mine_ade / "ADE_val_00001349.png").read_bytes()[:100])  # truncated
    for args in (["--real", broken, "--out", tmp_path / "x.npz"],
                 ["--real", ade / "validation", "--out", tmp_path / "x.txt"],
                 ["--real", tmp_path / "nope", "--out", tmp_path / "x.npz"]):
        r = cli("stats", "build", *args, "--weights", "random", *CPU, code=2)
        one_error_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "foreign.npz", "garbage.npz"]  # nothing written
