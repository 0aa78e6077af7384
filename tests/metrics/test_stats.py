"""Reference statistics (evalkit.metrics.stats): what the file holds, the round trip through
``evaluate_folders(real_stats=...)``, and every way a file is refused (one EvalkitError).

A cheap Inception stand-in (a toy network after the 299 px resize) keeps these fast; the
CLI journey (tests/journeys/test_journey8_reference_stats.py) runs the random Inception."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from evalkit.errors import EvalkitError
from evalkit.features import InceptionFID
from evalkit.metrics import evaluate_folders, stats
from evalkit.metrics.options import EvaluationOptions


class Toy(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


@pytest.fixture(scope="module")
def toy():
    """An injected Inception: the 299 px resize, then a toy network (its protocol names it 'toy')."""
    return {"inception": InceptionFID(network=Toy(), network_id="toy")}


@pytest.fixture
def sets(tmp_path, photos, write_folder):
    """Generated (8 x 32 px) and real (7 images of two sizes) folders of real photographs."""
    gen = write_folder(tmp_path / "gen", photos(8, 32))
    real = write_folder(tmp_path / "real", photos(4, 48, offset=4), [f"r{i}" for i in range(4)], fmt="jpg")
    write_folder(real, photos(3, 40, offset=9), [f"s{i}" for i in range(3)])
    return gen, real


OPTS = dict(weights="random", cache=False, device="cpu")


def test_the_file_holds_features_moments_manifest_and_protocol(toy, sets, tmp_path):
    gen, real = sets
    ref = stats.build(real, EvaluationOptions(**OPTS), backbones=toy)
    path = stats.save(ref, tmp_path / "ref.npz")
    back = stats.load(path)
    files = sorted(real.iterdir())
    assert list(back.manifest) == [f.stem for f in files]  # feature order = the order --real reads
    assert back.manifest == {f.stem: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    np.testing.assert_array_equal(back.features, ref.features)
    f64 = back.features.astype(np.float64)
    np.testing.assert_allclose(back.mu, f64.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.sigma, np.cov(f64, rowvar=False), rtol=0, atol=1e-9)
    p = back.protocol
    assert (p["metric_variant"], p["backbone"], p["weights_sha256"], p["resolution"], p["resize"]) == \
           ("clean", "toy", "toy", 299, "clean-pil-bicubic")
    assert p["n_images"] == 7 and p["real_resize"] == "none" and p["image_format"] == "jpeg+png"
    assert "protocol" in p and "evalkit_version" in p and "library_versions" in p
    with np.load(path, allow_pickle=False) as z:  # mu / sigma under the names pytorch-fid and clean-fid read
        assert {"mu", "sigma", "features", stats.HEADER} == set(z.files)


def test_stats_give_the_numbers_of_the_folder(toy, sets, tmp_path):
    gen, real = sets
    path = stats.save(stats.build(real, EvaluationOptions(**OPTS), backbones=toy), tmp_path / "ref.npz")
    kw = dict(metrics=["fid", "kid", "prdc"], kid_subset_size=4, kid_subsets=7, seed=3, progress=False, backbones=toy,
              **OPTS)
    a = evaluate_folders(gen, real, **kw)
    b = evaluate_folders(gen, real_stats=path, **kw)
    assert list(a["metric"]) == list(b["metric"]) == ["FID", "KID", "KID-std", "precision", "recall", "density",
                                                      "coverage"]
    np.testing.assert_allclose(b["value"], a["value"], rtol=0, atol=1e-9)
    assert a.drop(columns="value").equals(b.drop(columns="value"))  # same protocol columns, n, variants
    assert b.attrs["n_real"] == 7 and any("real set: 7 images' Inception features" in n for n in b.attrs["notes"])


def test_paired_metrics_are_skipped_with_a_reason(toy, sets, tmp_path):
    gen, real = sets
    path = stats.save(stats.build(real, EvaluationOptions(**OPTS), backbones=toy), tmp_path / "ref.npz")
    df = evaluate_folders(gen, real_stats=path, progress=False, kid_subset_size=4, backbones=toy, **OPTS)
    assert set(df["metric"]) == {"FID", "KID", "KID-std", "precision", "recall", "density", "coverage"}
    for family in ("swd", "psnr", "ssim", "lpips"):
        assert df.attrs["skipped"][family].startswith("needs the real images; --real-stats holds only")
    with pytest.raises(EvalkitError, match="metric 'psnr' .* needs the real images"):
        evaluate_folders(gen, real_stats=path, metrics=["psnr"], progress=False, backbones=toy, **OPTS)


@pytest.mark.parametrize("change,field", [
    (dict(fid_mode="legacy"), "metric_variant is 'clean' in the file, 'legacy' here"),
    (dict(weights="pretrained"), "weights_sha256 is 'random-init(seed=0)' in the file, 'pretrained' here"),
    (dict(seed=1), "weights_sha256 is 'random-init(seed=0)' in the file, 'random-init(seed=1)' here"),
    (dict(real_size=64), "real_resize is 'none' in the file, 'pil-bicubic-64' here"),
])
def test_another_protocol_is_refused_naming_the_field(sets, tmp_path, monkeypatch, change, field):
    """Built with the random Inception's protocol (edited in, no network run): each request
    that differs is refused before any backbone is built."""
    gen, real = sets
    monkeypatch.setattr("evalkit.metrics.registry.build_backbones",
                        lambda *a, **k: pytest.fail("a backbone was built before the protocol check"))
    features = np.random.default_rng(0).normal(size=(7, 16)).astype(np.float32)
    f64 = features.astype(np.float64)
    protocol = {"metric_variant": "clean", "resolution": 299, "resize": "clean-pil-bicubic", "real_resize": "none",
                "backbone": "inception-v3-torchvision", "weights_sha256": "random-init(seed=0)", "n_images": 7,
                "protocol": "clean"}
    ref = stats.ReferenceStats(features, f64.mean(0), np.cov(f64, rowvar=False), protocol,
                               {f"r{i}": "0" * 64 for i in range(7)})
    path = stats.save(ref, tmp_path / "ref.npz")
    real_size = change.pop("real_size", None)
    with pytest.raises(EvalkitError) as err:
        evaluate_folders(gen, real_stats=path, real_size=real_size, progress=False, **{**OPTS, **change})  # built ones
    assert field in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_different_network_is_refused_after_it_is_built(toy, sets, tmp_path):
    gen, real = sets
    ref = stats.build(real, EvaluationOptions(**OPTS), backbones=toy)
    other = stats.ReferenceStats(ref.features, ref.mu, ref.sigma, {**ref.protocol, "resize": "legacy-torch-bilinear"},
                                 ref.manifest, path=tmp_path / "x.npz")
    with pytest.raises(EvalkitError, match="resize is 'legacy-torch-bilinear' in the file, 'clean-pil-bicubic' here"):
        evaluate_folders(gen, real_stats=other, progress=False, backbones=toy, **OPTS)


def _garbage(path):
    path.write_bytes(b"\x00\xffnot a zip at all" * 10)


def _foreign(path):  # a clean-fid / pytorch-fid statistics file
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4))


def _truncated(path, good):
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _tampered(path, good):
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mu"] = arrays["mu"] + 1.0
    np.savez(path, **arrays)


def _other_header(path, good):
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[stats.HEADER] = np.array(json.dumps({"format": "something-else"}))
    np.savez(path, **arrays)


@pytest.mark.parametrize("make,message", [
    (_garbage, "unreadable reference-statistics file"),
    (_foreign, "not an evalkit reference-statistics file (entries: mu, sigma; no 'evalkit_stats')"),
    (_truncated, "unreadable reference-statistics file"),
    (_tampered, "corrupt reference-statistics file: mu is not the mean of the features"),
    (_other_header, "corrupt reference-statistics file: 'evalkit_stats' is not an evalkit-reference-stats header"),
])
def test_a_corrupt_or_foreign_file_is_one_error(toy, sets, tmp_path, make, message):
    gen, real = sets
    good = stats.save(stats.build(real, EvaluationOptions(**OPTS), backbones=toy), tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    make(bad) if make in (_garbage, _foreign) else make(bad, good)
    with pytest.raises(EvalkitError) as err:
        stats.load(bad)
    assert message in str(err.value) and str(bad) in str(err.value) and "evalkit stats build" in str(err.value)


def test_real_and_real_stats_exclude_each_other(toy, sets, tmp_path):
    gen, real = sets
    with pytest.raises(EvalkitError, match="not both"):
        evaluate_folders(gen, real, real_stats=tmp_path / "x.npz", progress=False, backbones=toy, **OPTS)
    with pytest.raises(EvalkitError, match="no real set: pass the real images"):
        evaluate_folders(gen, progress=False, backbones=toy, **OPTS)
    with pytest.raises(EvalkitError, match="not found"):
        evaluate_folders(gen, real_stats=tmp_path / "x.npz", progress=False, backbones=toy, **OPTS)


def test_a_paper_preset_round_trips_and_is_compared(toy, sets, tmp_path):
    """Under rabit2022 (pytorch-fid mode, real images to the generated size and through JPEG
    q75): the stats build prepares the real set as `evaluate --real` does; a file of another
    preset is refused naming `protocol`; the preset needs the generated side (--real-size)."""
    gen, real = sets
    opts = EvaluationOptions(**OPTS, protocol="rabit2022")
    with pytest.raises(EvalkitError, match="protocol rabit2022 resizes the real images to the generated images' "
                                           "size; pass --real-size N"):
        stats.build(real, opts, backbones=toy)
    ref = stats.build(real, opts, real_size=32, backbones=toy)
    assert (ref.protocol["protocol"], ref.protocol["metric_variant"], ref.protocol["real_resize"]) == \
           ("rabit2022", "legacy", "pil-bicubic-32")
    path = stats.save(ref, tmp_path / "rabit.npz")
    kw = dict(metrics=["fid"], protocol="rabit2022", progress=False, backbones=toy, **OPTS)
    a, b = evaluate_folders(gen, real, **kw), evaluate_folders(gen, real_stats=path, **kw)
    assert b["value"].iloc[0] == pytest.approx(a["value"].iloc[0], abs=1e-9) and a["value"].iloc[0] > 0
    clean = stats.save(stats.build(real, EvaluationOptions(**OPTS), real_size=32, backbones=toy), tmp_path / "c.npz")
    with pytest.raises(EvalkitError, match="protocol is 'clean' in the file, 'rabit2022' here"):
        evaluate_folders(gen, real_stats=clean, **kw)
