"""Method-specific modules: SEACE (UNITE eq. 6-7), CONFI (RABIT Sec. 3.2), the cycle term."""

from __future__ import annotations

import pytest
import torch

from evalkit.methods.alignment.correspondence import DenseCorrespondence
from evalkit.methods.common.encoders import CorrespondenceNet, CosineAlignment
from evalkit.methods.common.normalization import positional_norm
from evalkit.methods.rabit.model import CONFI
from evalkit.methods.unite.seace import SEACE, semantic_activation_matrix


def _regions(b=1, h=4, w=4):
    labels = torch.zeros(b, h, w, dtype=torch.long)
    labels[:, :, w // 2:] = 1
    return labels


def test_semantic_activation_matrix_averages_within_each_semantic_region():
    labels = _regions()
    x = 50.0 * torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()  # well separated semantics
    m = semantic_activation_matrix(x)[0]
    same = (labels.flatten()[:, None] == labels.flatten()[None, :]).float()
    torch.testing.assert_close(m, same / same.sum(1, keepdim=True), atol=1e-6, rtol=0)


def test_seace_implements_eq_6_and_7():
    torch.manual_seed(0)
    layer = SEACE(channels=3, cond_nc=2, feat_nc=4, hidden=5, map_index=0, attn_size=4)
    labels = _regions()
    cond = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    guide = {"aligned": [torch.randn(1, 4, 4, 4)], "seg": cond, "fx": 50.0 * cond}
    x = torch.randn(1, 3, 4, 4)
    out = layer(x, guide)
    m = semantic_activation_matrix(guide["fx"])
    g_x = (layer.z_gamma(guide["aligned"][0]).flatten(2) @ m.transpose(1, 2)).view(1, 5, 4, 4)
    mu_x = (layer.z_mu(guide["aligned"][0]).flatten(2) @ m.transpose(1, 2)).view(1, 5, 4, 4)
    modulated = g_x * layer.cond_shared(cond) + mu_x  # eq. 6
    expect = positional_norm(x) * (1 + layer.gamma(modulated)) + layer.mu(modulated)  # eq. 7
    torch.testing.assert_close(out, expect)
    # gamma_x is constant within each semantic region (aggregated over the region)
    left, right = g_x[..., :2].flatten(2), g_x[..., 2:].flatten(2)
    assert torch.allclose(left, left[..., :1].expand_as(left), atol=1e-5)
    assert torch.allclose(right, right[..., :1].expand_as(right), atol=1e-5)


def _identity_corr(b, c, side, confidence):
    n = side * side
    weights = torch.eye(n).expand(b, n, n).clone()
    return DenseCorrespondence(weights, (side, side), (side, side), confidence)


@pytest.mark.parametrize("conf", [0.0, 1.0, 0.3])
def test_confi_output_is_a_per_channel_convex_fusion(conf):
    torch.manual_seed(0)
    confi = CONFI(cond_nc=3, nc=6)
    cond, exemplar = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8) * 2 - 1
    corr = _identity_corr(2, 6, 8, torch.full((2, 1, 8, 8), conf))
    fused, cmap, multi = confi(cond, exemplar, corr)
    x = confi.cond_conv(cond)
    tz = confi.exemplar_conv(exemplar)
    torch.testing.assert_close(fused, x * (1 - multi) + tz * multi)
    f = x * (1 - conf) + tz * conf  # the single-channel fusion feeds the multi-channel confidence
    torch.testing.assert_close(multi, confi.multi(f))
    assert multi.shape == (2, 6, 8, 8) and (cmap == conf).all()


def test_cycle_of_a_permutation_correspondence_recovers_the_exemplar():
    net = CorrespondenceNet(2, 8, 4, 4, 4, 1, CosineAlignment(0.01))
    perm = torch.randperm(16)
    weights = torch.eye(16)[perm].unsqueeze(0)  # a bijective warp: T^T T = I
    corr = DenseCorrespondence(weights, (4, 4), (4, 4))
    z = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(net.cycle({"corr": corr}, z), z)
    blurry = DenseCorrespondence(torch.full((1, 16, 16), 1 / 16), (4, 4), (4, 4))  # many-to-one
    assert (net.cycle({"corr": blurry}, z) - z).abs().mean() > 0.5
