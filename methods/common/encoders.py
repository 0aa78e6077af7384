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

__all__ = ["FeatureExtractor", "StyleEncoder", "StyleCode", "CorrespondenceNet", "CosineAlignment", "n_down_for"]


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
    """SPADE-VAE's ConvEncoder: stride-2 3x3 convs (spectral + instance norm, or ``norm="none"``)
    to 4x4, then ``mu, logvar``."""

    def __init__(self, size: int, ngf: int, z_dim: int, norm: str = "instance"):
        super().__init__()
        n = max(1, int(math.log2(size // 4)))
        layers, nc = [], 3
        for i in range(n):
            out = ngf * min(8, 2 ** i)
            layers += [spectral_norm(nn.Conv2d(nc, out, 3, stride=2, padding=1)),
                       nn.InstanceNorm2d(out) if norm == "instance" else nn.Identity(), nn.LeakyReLU(0.2)]
            nc = out
        self.body = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(nc * 16, z_dim)
        self.fc_var = nn.Linear(nc * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(self.body(image), 4).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


class StyleCode(nn.Module):
    """SPADE-VAE's style path (Park et al. 2019, Sec. 3.3): :class:`StyleEncoder` → ``z`` → a linear
    map to the generator's start grid ``[B, z_dim, start, start]``. ``z ~ N(mu, sigma^2)`` when
    ``sample`` (training), else ``mu`` (translation is deterministic). Returns ``(x0, mu, logvar)``."""

    def __init__(self, size: int, ngf: int, z_dim: int, start: int, norm: str = "instance"):
        super().__init__()
        self.encoder = StyleEncoder(size, ngf, z_dim, norm)
        self.fc = nn.Linear(z_dim, z_dim * start ** 2)
        self.start = start

    def forward(self, image: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(image)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.fc(z).view(z.shape[0], -1, self.start, self.start), mu, logvar


def _full_precision(t: torch.Tensor):
    """Disable CUDA autocast (the alignment maths runs in float32 even in a bf16 step)."""
    return torch.autocast("cuda", enabled=False) if t.is_cuda else contextlib.nullcontext()


def _is_one_hot(cond: torch.Tensor) -> bool:
    """A one-hot label map (every position exactly one channel at 1): itself a region map."""
    return bool(((cond == 0) | (cond == 1)).all() and (cond.sum(1) == 1).all())


class CorrespondenceNet(nn.Module):
    """The alignment network shared by CoCosNet, RABIT and UNITE.

    F_X (conditional input → features) and F_Z (exemplar image → features) on the
    correspondence grid, optionally CoCosNet's label mixing (``label_mix``, ``--maskmix``:
    one residual block shared by both sides on ``[features, resized condition]``, then a
    1x1 projection back to ``feat_nc``), optional position channels appended to both
    (``position``: ``"none"``, ``"spe"`` — RABIT's semantic position encoding of each side's
    region map — or ``"coord"``, a global CoordConv grid) and an ``aligner`` module from
    :mod:`evalkit.methods.alignment` (``aligner(query, key) -> Correspondence``). Features are
    L2-normalised per position before the position channels are appended, so ``pos_weight``
    sets the position/semantics balance of the matching cost.

    SPE needs a real region map: the batch's ``label`` / ``exemplar_label`` index maps when
    the dataset has them (shapes in every condition, CelebA-HQ parts, ADE20K, ...), else the
    condition itself when it is a one-hot label map. Without one (edge / keypoint inputs with
    no parsing) the arg-max over channels would be edge-vs-not-edge, not semantics, so SPE
    falls back to the global grid and ``out["position"]`` says ``"coord (no region map)"``.
    """

    def __init__(self, cond_nc: int, size: int, corr_size: int, ngf: int, feat_nc: int, n_res: int,
                 aligner: nn.Module, position: str = "none", pos_weight: float = 1.0, label_mix: bool = False):
        super().__init__()
        if position not in ("none", "spe", "coord"):
            raise ValueError(f"position must be none, spe or coord, got {position!r}")
        n_down = n_down_for(size, corr_size)
        self.f_x = FeatureExtractor(cond_nc, ngf, feat_nc, n_down, n_res)
        self.f_z = FeatureExtractor(3, ngf, feat_nc, n_down, n_res)
        self.mix = nn.Sequential(_ResBlock(feat_nc + cond_nc), nn.Conv2d(feat_nc + cond_nc, feat_nc, 1)) \
            if label_mix else None
        self.aligner = aligner
        self.position = position
        self.pos_weight = pos_weight
        self.corr_size = corr_size

    def _with_position(self, feat: torch.Tensor, cond: torch.Tensor, regions: torch.Tensor | None) -> tuple[torch.Tensor, str]:
        if self.position == "none":
            return feat, "none"
        from evalkit.methods.alignment.position import coord_grid, semantic_position_encoding

        b, _, h, w = feat.shape
        used = self.position
        if self.position == "spe":
            if regions is None and _is_one_hot(cond):
                regions = cond.argmax(1)
            if regions is None:
                used = "coord (no region map)"
            else:
                small = F.interpolate(regions[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
                pos = semantic_position_encoding(small)
        if used != "spe":
            pos = coord_grid(b, h, w, device=feat.device)
        pos = pos.to(feat.dtype)
        return torch.cat([F.normalize(feat, dim=1), self.pos_weight * pos / math.sqrt(2)], 1), used

    def _mixed(self, feat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.mix is None:
            return feat
        small = F.interpolate(cond.to(feat.dtype), size=feat.shape[-2:], mode="nearest")
        return self.mix(torch.cat([F.normalize(feat, dim=1), small], 1))

    def forward(self, cond: torch.Tensor, exemplar: torch.Tensor, exemplar_cond: torch.Tensor,
                regions: torch.Tensor | None = None, exemplar_regions: torch.Tensor | None = None) -> dict:
        """``regions`` / ``exemplar_regions``: ``[B, H, W]`` index maps for SPE (the batch's labels)."""
        fx, _ = self.f_x(cond)
        fz, z_stages = self.f_z(exemplar)
        mx, mz = self._mixed(fx, cond), self._mixed(fz, exemplar_cond)
        qx, used = self._with_position(mx.float(), cond, regions)
        kz, used_z = self._with_position(mz.float(), exemplar_cond, exemplar_regions)
        with _full_precision(qx):  # transport / softmax at eps 1e-4 or temperature 0.01 is not bf16 material
            corr = self.aligner(qx, kz)
        position = used if used == used_z else f"{used} (query), {used_z} (exemplar)"
        return {"corr": corr, "fx": fx, "fz": fz, "qx": qx, "kz": kz, "z_stages": z_stages, "position": position}

    def cycle(self, out: dict, values: torch.Tensor) -> torch.Tensor:
        """``T^T T Z`` (RABIT eq. 4, UNITE eq. 8, CoCosNet's cycle): ``values`` warped onto the
        query grid and back onto the key grid with the column-normalised transpose
        (:meth:`~evalkit.methods.alignment.correspondence.Correspondence.warp_back`: the dense
        matrix for cosine / OT, the block scatter for RAS, never an ``L x L`` matrix RAS lacks)."""
        corr = out["corr"]
        with _full_precision(values):
            return corr.warp_back(corr.warp(values.float()))

    def consistency(self, out: dict, real: torch.Tensor) -> torch.Tensor:
        """``||F_X(X) - F_Z(X')||_1`` with ``X'`` the ground-truth image."""
        f_real, _ = self.f_z(real)
        return F.l1_loss(out["fx"], f_real)

    def warp_mask(self, out: dict, label: torch.Tensor | None, exemplar_label: torch.Tensor | None):
        """CoCosNet's warp-mask loss (:func:`~evalkit.methods.common.losses.warp_mask_loss`) of the
        exemplar's one-hot labels warped by ``out["corr"]``; None when the batch has no label maps."""
        from evalkit.methods.common.losses import warp_mask_loss

        if label is None or exemplar_label is None:
            return None
        k = int(max(label.max().item(), exemplar_label.max().item())) + 1
        one_hot = F.one_hot(exemplar_label.long(), k).permute(0, 3, 1, 2).float()
        with _full_precision(one_hot):
            return warp_mask_loss(out["corr"].warp(one_hot), label, exemplar_label)


class CosineAlignment(nn.Module):
    """Module wrapper of :func:`evalkit.methods.alignment.cosine.dense_cosine_attention` (CoCosNet, softmax
    temperature; ``centre`` / ``match_kernel``: the released code's ``--PONO_C`` and ``--match_kernel``)."""

    def __init__(self, temperature: float = 0.01, centre: bool = False, match_kernel: int = 1):
        super().__init__()
        self.temperature, self.centre, self.match_kernel = temperature, bool(centre), int(match_kernel)

    def forward(self, query: torch.Tensor, key: torch.Tensor):
        from evalkit.methods.alignment.cosine import dense_cosine_attention

        return dense_cosine_attention(query.float(), key.float(), temperature=self.temperature,
                                      centre=self.centre, match_kernel=self.match_kernel)
