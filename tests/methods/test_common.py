"""Shared networks and losses against closed forms and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evalkit.methods.common.contextual import contextual_loss, contextual_similarity
from evalkit.methods.common.discriminator import MultiscaleDiscriminator
from evalkit.methods.common.encoders import FeatureExtractor, StyleEncoder
from evalkit.methods.common.losses import (feature_matching_loss, hinge_d_loss, hinge_g_loss, kld_loss, pseudo_pair_loss,
                                   vgg_loss_per_sample)
from evalkit.methods.common.normalization import positional_norm
from evalkit.methods.common.spade import SPADE, SPADEGenerator
from evalkit.methods.common.vgg import LAYERS, PerceptualVGG19


def test_positional_norm_matches_per_position_standardisation():
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    out = positional_norm(x, eps=0.0)
    ref = np.empty_like(x.numpy())
    for b in range(2):
        for i in range(4):
            for j in range(3):
                v = x[b, :, i, j].numpy()
                ref[b, :, i, j] = (v - v.mean()) / v.std()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


def test_spade_with_zero_modulation_is_the_plain_norm():
    layer = SPADE(6, 3, 8, norm="instance")
    for conv in (layer.gamma, layer.beta):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(2, 6, 8, 8)
    out = layer(x, {"seg": torch.rand(2, 3, 16, 16)})
    torch.testing.assert_close(out, F.instance_norm(x))


def test_spade_shift_follows_the_guide_pixelwise():
    layer = SPADE(1, 1, 1, norm="instance")
    with torch.no_grad():
        layer.shared[0].weight.zero_(); layer.shared[0].weight[0, 0, 1, 1] = 1.0; layer.shared[0].bias.zero_()
        layer.gamma.weight.zero_(); layer.gamma.bias.zero_()
        layer.beta.weight.zero_(); layer.beta.weight[0, 0, 1, 1] = 2.0; layer.beta.bias.zero_()
    x = torch.randn(1, 1, 4, 4)
    g = torch.rand(1, 1, 4, 4)  # relu(g) = g, beta = 2 g
    torch.testing.assert_close(layer(x, {"seg": g}), F.instance_norm(x) + 2 * g)


@pytest.mark.parametrize("num_up,size", [(3, 32), (4, 64), (5, 256)])
def test_generator_output_shape_and_range(num_up, size):
    make = lambda nc, stage: SPADE(nc, 4, 8, norm="instance")  # noqa: E731
    g = SPADEGenerator(4, 4, num_up, size, make, max_mult=4)
    x0 = torch.randn(1, 4, size // 2 ** num_up, size // 2 ** num_up)
    out = g(x0, {"seg": torch.rand(1, 4, size, size)})
    assert out.shape == (1, 3, size, size)
    assert out.abs().max() <= 1


def test_multiscale_discriminator_scales_and_spectral_norm():
    d = MultiscaleDiscriminator(5, ndf=8, n_layers=3, num_d=2)
    out = d(torch.randn(2, 5, 64, 64))
    assert len(out) == 2 and len(out[0]) == 4
    assert out[0][-1].shape[1] == 1 and out[1][-1].shape[-1] < out[0][-1].shape[-1]
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)  # spectral norm is on


def test_hinge_losses_closed_form():
    real = [[torch.tensor([0.5, 2.0])]]
    fake = [[torch.tensor([-2.0, 0.25])]]
    # D: mean(relu(1 - [0.5, 2])) + mean(relu(1 + [-2, 0.25])) = 0.25 + 0.625
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.875)
    assert hinge_g_loss(fake).item() == pytest.approx(0.875)  # -mean(fake)


def test_feature_matching_uses_intermediate_layers_only():
    real = [[torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 2, 2)]]
    fake = [[torch.full((1, 2, 2, 2), 3.0), torch.full((1, 1, 2, 2), 100.0)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(2.0)


def test_kld_matches_torch_distributions():
    mu, logvar = torch.randn(3, 7), torch.randn(3, 7)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kld_loss(mu, logvar), torch.distributions.kl_divergence(q, p).sum())


def _cx_reference(x: np.ndarray, y: np.ndarray, h: float, eps: float) -> float:
    """Mechrez et al. 2018, eq. 1-5, one feature set ``[C, N]`` each, by explicit loops."""
    mu = y.mean(axis=1, keepdims=True)
    xs = [(x[:, i] - mu[:, 0]) / np.linalg.norm(x[:, i] - mu[:, 0]) for i in range(x.shape[1])]
    ys = [(y[:, j] - mu[:, 0]) / np.linalg.norm(y[:, j] - mu[:, 0]) for j in range(y.shape[1])]
    n, m = len(xs), len(ys)
    d = np.array([[1 - xs[i] @ ys[j] for j in range(m)] for i in range(n)])
    cx = np.zeros((n, m))
    for i in range(n):
        dt = d[i] / (d[i].min() + eps)
        w = np.exp((1 - dt) / h)
        cx[i] = w / w.sum()
    return float(np.mean([cx[:, j].max() for j in range(m)]))


def test_contextual_similarity_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 6, 3, 4, generator=g), torch.randn(2, 6, 2, 5, generator=g)
    got = contextual_similarity(x.double(), y.double(), bandwidth=0.5, eps=1e-5)
    for b in range(2):
        ref = _cx_reference(x[b].flatten(1).double().numpy(), y[b].flatten(1).double().numpy(), 0.5, 1e-5)
        assert got[b].item() == pytest.approx(ref, rel=1e-5)


def test_contextual_loss_is_zero_for_identical_sets_and_positive_otherwise():
    y = torch.randn(1, 8, 4, 4)
    assert contextual_loss(y, y).item() == pytest.approx(0.0, abs=1e-4)
    assert contextual_loss(torch.randn(1, 8, 4, 4), y).item() > 0.5


def test_contextual_loss_ignores_spatial_arrangement():
    y = torch.randn(1, 8, 4, 4)
    shuffled = y.flatten(2)[:, :, torch.randperm(16)].view(1, 8, 4, 4)
    assert contextual_loss(shuffled, y).item() == pytest.approx(0.0, abs=1e-4)


def test_pseudo_pair_loss_is_cocosnets_fm_term():
    """Restatement of CoCosNet's ``fm`` (models/pix2pix_model.py): sample weights
    ``self_ref / (sum(self_ref) + 1e-5)``, ``util.weighted_l1_loss`` = mean over B, C, H, W of
    ``|a - b| * w_b``, layer weights 1/32 ... 1 on relu1_2 ... relu5_2."""
    from evalkit.methods.common.losses import PSE_LAYERS

    g = torch.Generator().manual_seed(0)
    fake = {n: torch.randn(3, 2, 4, 4, generator=g) for n in PSE_LAYERS}
    real = {n: torch.randn(3, 2, 4, 4, generator=g) for n in PSE_LAYERS}
    self_ref = torch.tensor([True, False, True])
    w = self_ref.float() / (self_ref.float().sum() + 1e-5)
    ref = sum(lw * ((fake[n] - real[n]).abs() * w.view(3, 1, 1, 1)).mean()
              for n, lw in zip(PSE_LAYERS, (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)))
    assert pseudo_pair_loss(fake, real, self_ref).item() == pytest.approx(ref.item(), rel=1e-6)
    assert pseudo_pair_loss(fake, real, torch.tensor([False, False, False])).item() == 0.0


def test_warp_mask_loss_hand_checked():
    """CoCosNet's warp-mask loss: NLL of the warped exemplar labels at the query's class, classes
    absent from the exemplar masked out."""
    from evalkit.methods.common.losses import warp_mask_loss

    label = torch.tensor([[[0, 1], [2, 1]]])  # query classes 0, 1, 2
    exemplar_label = torch.tensor([[[0, 0], [1, 1]]])  # class 2 is absent from the exemplar
    probs = torch.tensor([[[[0.5, 0.1], [0.2, 0.3]],   # P(class 0)
                           [[0.5, 0.9], [0.3, 0.7]],   # P(class 1)
                           [[0.0, 0.0], [0.5, 0.0]]]])  # P(class 2)
    expect = -(math.log(0.5 + 1e-10) + math.log(0.9 + 1e-10) + math.log(0.7 + 1e-10)) / (3 + 1e-5)
    assert warp_mask_loss(probs, label, exemplar_label).item() == pytest.approx(expect, rel=1e-6)


def test_vgg19_layout_matches_torchvision():
    from torchvision.models import vgg19

    ours = PerceptualVGG19(("relu5_4",), width=64)
    ref = vgg19(weights=None).features
    ours_shapes = [tuple(p.shape) for p in ours.features.parameters()]
    ref_shapes = [tuple(p.shape) for p in list(ref.parameters())[: len(ours_shapes)]]
    assert ours_shapes == ref_shapes and len(ours_shapes) == 32
    ours.features.load_state_dict({k: v for k, v in ref.state_dict().items()}, strict=True)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expect = ref[:-1](((x + 1) / 2 - ours.mean) / ours.std)  # relu5_4 comes before the last max-pool
    torch.testing.assert_close(ours(x)["relu5_4"], expect)
    assert len(LAYERS) == 16 and not any(p.requires_grad for p in ours.parameters())


def test_feature_extractor_and_style_encoder_shapes():
    f = FeatureExtractor(7, 8, 16, n_down=2, n_res=1)
    out, stages = f(torch.randn(2, 7, 32, 32))
    assert out.shape == (2, 16, 8, 8) and [s.shape[-1] for s in stages] == [32, 16, 8]
    mu, logvar = StyleEncoder(32, 8, 12)(torch.randn(2, 3, 32, 32))
    assert mu.shape == logvar.shape == (2, 12)
    assert math.isfinite(mu.sum().item())


def test_vgg19_uses_the_weights_registry_and_refuses_a_corrupt_file(tmp_path, monkeypatch):
    from evalkit.errors import EvalkitError

    monkeypatch.setenv("EVALKIT_WEIGHTS", str(tmp_path))
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        assert PerceptualVGG19(("relu1_1",), width=64).pretrained is False  # no file: loud random init
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(b"not the vgg19 weights")
    with pytest.raises(EvalkitError, match="corrupt or wrong file"):
        PerceptualVGG19(("relu1_1",), width=64)
