"""LPIPS vs lpips.LPIPS (bit-level), VGG consistency vs torchvision VGG19 restated, PSNR/SSIM
vs closed forms."""

from __future__ import annotations

import dataclasses
import itertools

import lpips
import numpy as np
import pytest
import torch
import torchvision

from evalkit import weights as W
from evalkit.errors import EvalkitError
from evalkit.features import VGG19Features
from evalkit.metrics import LPIPSAlex, lpips_distance, lpips_diversity, psnr, ssim, vgg_consistency


def _ref_lpips(seed=0):
    torch.manual_seed(seed)
    return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()


def _t(x):
    return torch.from_numpy(x).float() / 127.5 - 1


@pytest.fixture(scope="module")
def ours():
    return LPIPSAlex("random", seed=0)


def test_lpips_distance_bit_identical_to_lpips_forward(photos, ours):
    a, b = photos(6, 64), photos(6, 64, offset=4)
    ref = _ref_lpips(0)(_t(a), _t(b)).detach().reshape(-1).numpy()
    got = lpips_distance(a, b, model=ours)
    assert np.array_equal(got, ref.astype(np.float64))
    assert (got > 0).all()


def test_lpips_diversity_equals_mean_over_all_pairs(photos, ours):
    groups = [photos(3, 48), photos(3, 48, offset=6)]
    ref_net = _ref_lpips(0)
    expected = np.mean([np.mean([float(ref_net(_t(g[i:i + 1]), _t(g[j:j + 1]))) for i, j in itertools.combinations(range(3), 2)])
                        for g in groups])
    before = ours.calls
    got = lpips_diversity(np.stack(groups), model=ours)
    assert ours.calls - before == 2  # one trunk pass per group (K images), not one per pair
    assert got == pytest.approx(expected, rel=1e-6)


def test_lpips_random_weights_are_seeded(photos):
    a, b = photos(2, 32), photos(2, 32, offset=3)
    d0, d0b, d1 = (lpips_distance(a, b, weights="random", seed=s) for s in (0, 0, 1))
    assert np.array_equal(d0, d0b) and not np.array_equal(d0, d1)


def test_lpips_missing_weights_fail_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(EvalkitError) as err:
        LPIPSAlex("pretrained")
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path) in msg and "evalkit weights import" in msg
    assert "\n" not in msg


def test_lpips_pretrained_trunk_loads_like_torchvision(photos, tmp_path, monkeypatch):
    """A torchvision AlexNet state dict placed in the cache is loaded into the lpips trunk
    exactly as lpips itself loads it from torch hub (pnet_rand=False)."""
    torch.manual_seed(5)
    state = torchvision.models.alexnet(weights=None).state_dict()
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    path = hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    digest = W.file_sha256(path)
    monkeypatch.setitem(W.REGISTRY, "alexnet", dataclasses.replace(W.REGISTRY["alexnet"], sha256=digest, prefix_only=False))
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(hub / "checkpoints"))
    net = LPIPSAlex("pretrained")
    assert net.weights_id == digest
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False).eval()
    finally:
        torch.hub.set_dir(old)
    a, b = photos(3, 48), photos(3, 48, offset=2)
    assert np.array_equal(lpips_distance(a, b, model=net), ref(_t(a), _t(b)).detach().reshape(-1).numpy().astype(np.float64))


@pytest.fixture(scope="module")
def vgg():
    return VGG19Features("random", seed=0)


def test_vgg_consistency_matches_restated_definition(photos, vgg):
    out, gt, ex = photos(3, 32), photos(3, 32, offset=3), photos(3, 32, offset=6)
    got = vgg_consistency(out, gt, ex, model=vgg)
    # Restatement with torchvision VGG19 built the same way (seeded), NumPy maths.
    torch.manual_seed(0)
    feats = torchvision.models.vgg19(weights=None).features.eval()
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

    def acts(x):
        h = torch.from_numpy(((x / 255.0 - mean) / std).astype(np.float32))
        res = {}
        with torch.no_grad():
            for i, layer in enumerate(feats[:32]):
                h = layer(h)
                if i in (3, 22, 31):
                    res[i] = h.clone().double().numpy()
        return res

    fo, fg, fe = acts(out), acts(gt), acts(ex)

    def cos(u, v):
        return np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)

    assert got["semantic-relu4_2"] == pytest.approx(cos(fo[22].reshape(3, -1), fg[22].reshape(3, -1)).mean(), rel=1e-5)
    assert got["semantic-relu5_2"] == pytest.approx(cos(fo[31].reshape(3, -1), fg[31].reshape(3, -1)).mean(), rel=1e-5)
    mo, me = fo[3].mean((2, 3)), fe[3].mean((2, 3))
    so, se = fo[3].std((2, 3)), fe[3].std((2, 3))
    assert got["style-mean"] == pytest.approx(cos(mo, me).mean(), rel=1e-5)
    assert got["style-std"] == pytest.approx(cos(so, se).mean(), rel=1e-5)
    same = vgg_consistency(out, out, out, model=vgg)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.values())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_style_stats_match_float64_numpy(layout):
    """The float32 two-pass statistics against numpy's float64 mean / population std, on
    ReLU-like maps including a near-constant channel (large mean, tiny spread)."""
    from evalkit.metrics.vgg import style_stats

    g = torch.Generator().manual_seed(0)
    f = torch.relu(torch.randn(3, 64, 40, 56, generator=g) * torch.rand(1, 64, 1, 1, generator=g) * 3)
    f[:, 5] = 50 + 1e-3 * torch.rand(3, 40, 56, generator=g)
    got = style_stats({"relu1_2": f.contiguous(memory_format=layout)}).numpy()
    ref = f.double().numpy().reshape(3, 64, -1)
    assert got.dtype == np.float64 and got.shape == (3, 2, 64)
    np.testing.assert_allclose(got[:, 0], ref.mean(2), rtol=3e-7, atol=1e-12)
    np.testing.assert_allclose(got[:, 1], ref.std(2), rtol=3e-7, atol=1e-12)


def test_vgg_missing_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path))
    with pytest.raises(EvalkitError, match="vgg19-dcbb9e9d.pth"):
        VGG19Features("pretrained")


def test_psnr_closed_form_and_ssim_identity(photos):
    a = photos(3, 32)
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = ((a.astype(np.float64) - b) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(psnr(b, a), 10 * np.log10(255 ** 2 / mse), rtol=1e-12)
    np.testing.assert_allclose(ssim(a, a), 1.0)
    assert (ssim(b, a) < 1).all() and (ssim(b, a) > 0.5).all()


def test_psnr_is_skimages_bit_for_bit(photos):
    """evalkit's PSNR (written out to keep scipy.stats out of `evaluate`) is
    ``skimage.metrics.peak_signal_noise_ratio``, including identical images (inf)."""
    from skimage.metrics import peak_signal_noise_ratio

    a = photos(4, 32)
    rng = np.random.default_rng(1)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    b[3] = a[3]
    expected = [peak_signal_noise_ratio(x, y, data_range=255)
                for x, y in zip(a.transpose(0, 2, 3, 1), b.transpose(0, 2, 3, 1))]
    assert psnr(b, a).tolist() == expected and np.isinf(expected[3])
