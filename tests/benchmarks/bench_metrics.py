"""Benchmarks of the evaluation core (not collected by default; run explicitly):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/bench_metrics.py \
        --benchmark-enable -q -s

1. FID + KID + SWD + LPIPS on one image set in one ``evaluate_folders`` call vs the
   reference libraries run separately on the same files: ``cleanfid.fid.compute_fid`` and
   ``compute_kid`` (each extracts Inception features of both folders), ``lpips.LPIPS`` per
   pair, and the PGGAN SWD restated in NumPy (scipy pyramid, per-neighbourhood indexing).
   Goal >= 1.5x.
2. A cached re-run of the same call vs the first run. Goal >= 20x.

Pretrained weights are not available offline, so both sides use the same seeded random
networks (torchvision Inception-v3 pool features, lpips AlexNet with ``pnet_rand=True``);
the work done is the same as with pretrained weights. Images: N_IMAGES generated + N_IMAGES
real crops of the photographs in ../shared/data at SIZE px (small, because the machine's
2 CPU cores are shared).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import lpips
import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image
from cleanfid import fid as cfid

from evalkit.features import InceptionFID
from evalkit.metrics import LPIPSAlex, evaluate_folders, fid_from_features

N_IMAGES = 16
SIZE = 64


def _photos(shared_data: Path, n: int, offset: int) -> list[np.ndarray]:
    roots = [shared_data / "cocosnet_samples" / "imgs" / "ade20k", shared_data / "spade_coco_stuff"]
    paths = sorted(p for r in roots for p in r.rglob("*.jpg"))
    paths = paths[offset:] + paths[:offset]
    out = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = min(w, h)
        for left, top in ((0, 0), (w - s, h - s)):
            out.append(np.asarray(im.crop((left, top, left + s, top + s)).resize((SIZE, SIZE), Image.BICUBIC)))
    return out[:n]


@pytest.fixture(scope="module")
def folders(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for name, offset in (("gen", 0), ("real", 7)):
        (root / name).mkdir()
        for i, im in enumerate(_photos(shared_data, N_IMAGES, offset)):
            Image.fromarray(im).save(root / name / f"s{i:03d}.png")
    return root / "gen", root / "real"


# --------------------------------------------------------------------------- reference side

GAUSS = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def _pggan_swd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """PGGAN metrics/sliced_wasserstein.py, restated (NumPy/SciPy, as released)."""
    rs = np.random.RandomState(seed)

    def down(x):
        return scipy.ndimage.convolve(x, GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]

    def up(x):
        s = x.shape
        r = np.zeros((s[0], s[1], 2 * s[2], 2 * s[3]), x.dtype)
        r[:, :, ::2, ::2] = x
        return scipy.ndimage.convolve(r, GAUSS[None, None] * 4.0, mode="mirror")

    def pyramid(x, levels):
        p = [np.float32(x)]
        for _ in range(1, levels):
            p.append(down(p[-1]))
            p[-2] -= up(p[-1])
        return p

    def desc(x):
        s = x.shape
        n = 128 * s[0]
        nh, ch, xx, yy = np.ogrid[0:n, 0:3, -3:4, -3:4]
        img = nh // 128
        xx = xx + rs.randint(3, s[3] - 3, size=(n, 1, 1, 1))
        yy = yy + rs.randint(3, s[2] - 3, size=(n, 1, 1, 1))
        d = x.flat[((img * s[1] + ch) * s[2] + yy) * s[3] + xx]
        d = d - d.mean(axis=(0, 2, 3), keepdims=True)
        d /= d.std(axis=(0, 2, 3), keepdims=True)
        return d.reshape(n, -1)

    levels = int(np.log2(a.shape[2] // 8))
    out = []
    for la, lb in zip(pyramid(a, levels), pyramid(b, levels)):
        da, db = desc(la), desc(lb)
        res = []
        for _ in range(4):
            dirs = rs.randn(da.shape[1], 128)
            dirs /= np.sqrt((dirs ** 2).sum(0, keepdims=True))
            dirs = dirs.astype(np.float32)
            res.append(np.abs(np.sort(da @ dirs, 0) - np.sort(db @ dirs, 0)).mean())
        out.append(np.mean(res) * 1e3)
    return float(np.mean(out))


def _reference(gdir: Path, rdir: Path, inception, lpips_net) -> dict:
    dev = torch.device("cpu")
    # compute_fid(fdir1, fdir2) = get_folder_features x 2 + frechet_distance (scipy sqrtm);
    # called step by step because sqrtm fails at N < D ("Imaginary component ...").
    kw = dict(mode="clean", num_workers=0, batch_size=16, device=dev, verbose=False)
    fa = cfid.get_folder_features(str(gdir), inception, **kw)
    fb = cfid.get_folder_features(str(rdir), inception, **kw)
    try:
        fid = cfid.frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
    except ValueError as err:
        fid = f"clean-fid failed: {err}"
    # compute_kid(fdir1, fdir2) extracts both folders' features again, then kernel_distance;
    # it takes no custom extractor, so its two steps are called here.
    ka = cfid.get_folder_features(str(gdir), inception, **kw)
    kb = cfid.get_folder_features(str(rdir), inception, **kw)
    np.random.seed(0)
    kid = cfid.kernel_distance(ka, kb)
    load = lambda d: np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(d.glob("*.png"))])  # noqa: E731
    g, r = load(gdir), load(rdir)
    with torch.no_grad():
        lp = [float(lpips_net(lpips.im2tensor(x), lpips.im2tensor(y))) for x, y in zip(g, r)]
    swd = _pggan_swd(g.transpose(0, 3, 1, 2), r.transpose(0, 3, 1, 2))
    return {"FID": fid, "FID_from_cleanfid_features": fid_from_features(fa, fb), "KID": kid,
            "LPIPS": float(np.mean(lp)), "SWD": swd}


def test_bench_one_call_vs_separate_and_cached_rerun(benchmark, folders, tmp_path):
    gdir, rdir = folders
    inception = InceptionFID("clean", "random", seed=0, device="cpu")
    inception_fn = inception.network  # float [B, 3, 299, 299] in 0..255 -> [B, 2048]: same network on both sides
    lpips_ours = LPIPSAlex("random", 0, device="cpu")
    torch.manual_seed(0)
    lpips_ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    metrics = ["fid", "kid", "swd", "lpips"]

    def ours(cache):
        bb = {"inception": inception, "lpips": lpips_ours}
        return evaluate_folders(gdir, rdir, metrics=metrics, weights="random", cache_dir=cache, progress=False,
                                backbones=bb)

    t0 = time.perf_counter()
    ref = _reference(gdir, rdir, inception_fn, lpips_ref)
    t_ref = time.perf_counter() - t0

    cache = tmp_path / "cache"

    def fresh():
        shutil.rmtree(cache, ignore_errors=True)
        return (cache,), {}

    df = benchmark.pedantic(ours, setup=fresh, rounds=1, iterations=1)
    t_one = benchmark.stats.stats.mean
    t0 = time.perf_counter()
    again = ours(cache)
    t_cached = time.perf_counter() - t0

    v = df.set_index("metric")["value"]
    assert v["FID"] == pytest.approx(ref["FID_from_cleanfid_features"], rel=1e-3)
    assert v["LPIPS-gt"] == pytest.approx(ref["LPIPS"], rel=1e-5)
    assert np.array_equal(df["value"].to_numpy(), again["value"].to_numpy())
    ratios = {"images": f"{N_IMAGES}+{N_IMAGES} at {SIZE}px", "t_reference_s": round(t_ref, 2),
              "t_one_call_s": round(t_one, 2), "t_cached_rerun_s": round(t_cached, 3),
              "speedup_one_call": round(t_ref / t_one, 2), "speedup_cached": round(t_one / t_cached, 1),
              "SWD_ours": round(float(v["SWD"]), 2), "SWD_reference_independent_patches": round(ref["SWD"], 2),
              "KID_ours": float(v["KID"]), "KID_cleanfid": ref["KID"], "FID_ours": float(v["FID"]),
              "FID_cleanfid": ref["FID"]}
    benchmark.extra_info.update(ratios)
    print("\n" + "\n".join(f"{k}: {val}" for k, val in ratios.items()))
