"""Feature extractors: the adaptive extractors F_X / F_Z and SPADE-VAE's style encoder.

F_X maps the conditional input and F_Z the exemplar image into one shared feature space
on the correspondence grid (CoCosNet's "adaptive feature extractors"; RABIT Sec. 3.1,
UNITE Sec. 3.1): a 3x3 stem, ``n_down`` stride-2 stages (width doubling, capped at 4x),
``n_res`` residual blocks, and a 1x1 projection to ``out_nc`` channels. Instance norm and
LeakyReLU(0.2) throughout. The intermediate maps are returned too (finest first): UNITE
transports them in its multi-stage feature transport.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["FeatureExtractor", "StyleEncoder", "CorrespondenceNet", "CosineAlignment", "n_down_for"]


def n_down_for(size: int, corr_size: int) -> int:
    """Number of stride-2 stages that take ``size`` to ``corr_size`` (both powers-of-two apart)."""
    ratio = size // corr_size
    if ratio * corr_size != size or ratio & (ratio - 1):
        raise ValueError(f"correspondence size {corr_size} must divide {size} by a power of two")
    return int(math.log2(ratio))


def _block(fin: int, fout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(fin, fout, 3, stride=stride, padding=1), nn.InstanceNorm2d(fout, affine=True), nn.LeakyReLU(0.2)
    )


class _ResBlock(nn.Module):
    def __init__(self, nc: int):
        super().__init__()
        self.body = nn.Sequential(_block(nc, nc, 1), nn.Conv2d(nc, nc, 3, padding=1), nn.InstanceNorm2d(nc, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureExtractor(nn.Module):
    """F_X or F_Z: ``[B, in_nc, S, S]`` → features ``[B, out_nc, S / 2**n_down, ...]`` and the stage maps."""

    def __init__(self, in_nc: int, ngf: int, out_nc: int, n_down: int, n_res: int = 2):
        super().__init__()
        self.stem = _block(in_nc, ngf, 1)
        downs, nc = [], ngf
        self.stage_nc = [ngf]
        for i in range(n_down):
            out = ngf * min(4, 2 ** (i + 1))
            downs.append(nn.Sequential(_block(nc, out, 2), _block(out, out, 1)))
            nc = out
            self.stage_nc.append(nc)
        self.downs = nn.ModuleList(downs)
        self.res = nn.Sequential(*[_ResBlock(nc) for _ in range(n_res)])
        self.proj = nn.Conv2d(nc, out_nc, 1)
        self.out_nc = out_nc

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        stages = [x]
        for down in self.downs:
            x = down(x)
            stages.append(x)
        return self.proj(self.res(x)), stages


class StyleEncoder(nn.Module):
    """SPADE-VAE's ConvEncoder: stride-2 3x3 convs (spectral + instance norm) to 4x4, then ``mu, logvar``."""

    def __init__(self, size: int, ngf: int, z_dim: int):
        super().__init__()
        n = max(1, int(math.log2(size // 4)))
        layers, nc = [], 3
        for i in range(n):
            out = ngf * min(8, 2 ** i)
            layers += [spectral_norm(nn.Conv2d(nc, out, 3, stride=2, padding=1)), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2)]
            nc = out
        self.body = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(nc * 16, z_dim)
        self.fc_var = nn.Linear(nc * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(self.body(image), 4).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def _full_precision(t: torch.Tensor):
    """Disable CUDA autocast (the alignment maths runs in float32 even in a bf16 step)."""
    return torch.autocast("cuda", enabled=False) if t.is_cuda else contextlib.nullcontext()


class CorrespondenceNet(nn.Module):
    """The alignment network shared by CoCosNet, RABIT and UNITE.

    F_X (conditional input → features) and F_Z (exemplar image → features) on the
    correspondence grid, optional position channels appended to both (``position``
    module: ``None``, RABIT's semantic position encoding or a global CoordConv grid,
    given as a callable ``(one_hot_or_channels [B, C, h, w]) -> [B, 2, h, w]``) and an
    ``aligner`` module from :mod:`evalkit.methods.alignment` (``aligner(query, key) -> Correspondence``).
    Features are L2-normalised per position before the position channels are appended,
    so ``pos_weight`` sets the position/semantics balance of the matching cost.
    """

    def __init__(self, cond_nc: int, size: int, corr_size: int, ngf: int, feat_nc: int, n_res: int,
                 aligner: nn.Module, position=None, pos_weight: float = 1.0):
        super().__init__()
        n_down = n_down_for(size, corr_size)
        self.f_x = FeatureExtractor(cond_nc, ngf, feat_nc, n_down, n_res)
        self.f_z = FeatureExtractor(3, ngf, feat_nc, n_down, n_res)
        self.aligner = aligner
        self.position = position
        self.pos_weight = pos_weight
        self.corr_size = corr_size

    def _with_position(self, feat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.position is None:
            return feat
        small = F.interpolate(cond.float(), size=feat.shape[-2:], mode="nearest")
        pos = self.position(small).to(feat.dtype)
        return torch.cat([F.normalize(feat, dim=1), self.pos_weight * pos / math.sqrt(2)], 1)

    def forward(self, cond: torch.Tensor, exemplar: torch.Tensor, exemplar_cond: torch.Tensor) -> dict:
        fx, _ = self.f_x(cond)
        fz, z_stages = self.f_z(exemplar)
        qx, kz = self._with_position(fx.float(), cond), self._with_position(fz.float(), exemplar_cond)
        with _full_precision(qx):  # transport / softmax at eps 1e-4 or temperature 0.01 is not bf16 material
            corr = self.aligner(qx, kz)
        return {"corr": corr, "fx": fx, "fz": fz, "qx": qx, "kz": kz, "z_stages": z_stages}

    def cycle(self, out: dict, values: torch.Tensor) -> torch.Tensor:
        """``T^T T Z``: ``values`` warped onto the query grid and back onto the key grid.

        A dense correspondence goes back with its own transpose (columns normalised to
        sum to one, so the result is again an average of exemplar values); a block (RAS)
        correspondence, which has no dense matrix, goes back through the reverse alignment
        F_Z → F_X.
        """
        from evalkit.methods.alignment.correspondence import DenseCorrespondence

        corr = out["corr"]
        warped = corr.warp(values)
        if isinstance(corr, DenseCorrespondence):
            t = corr.weights  # [B, Lq, Lk]
            back = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
            flat = torch.bmm(warped.flatten(2).to(back.dtype), back)  # [B, C, Lk]
            return flat.reshape(*warped.shape[:2], *corr.key_size)
        with _full_precision(warped):
            return self.aligner(out["kz"], out["qx"]).warp(warped.float())

    def consistency(self, out: dict, real: torch.Tensor) -> torch.Tensor:
        """``||F_X(X) - F_Z(X')||_1`` with ``X'`` the ground-truth image."""
        f_real, _ = self.f_z(real)
        return F.l1_loss(out["fx"], f_real)


class CosineAlignment(nn.Module):
    """Module wrapper of :func:`evalkit.methods.alignment.cosine.dense_cosine_attention` (CoCosNet, softmax temperature)."""

    def __init__(self, temperature: float = 0.01):
        super().__init__()
        self.temperature = temperature

    def forward(self, query: torch.Tensor, key: torch.Tensor):
        from evalkit.methods.alignment.cosine import dense_cosine_attention

        return dense_cosine_attention(query.float(), key.float(), temperature=self.temperature)
