"""Dense cosine correspondence, the CoCosNet baseline (Zhang et al. 2020, eq. 2-3).

``M_ij = cos(x_i, z_j)`` between every query position ``i`` and key position ``j``;
the warping matrix is ``softmax_j(M_ij / temperature)`` (CoCosNet uses 0.01).  Memory
is ``O(L^2)``: this is the baseline the ranking-and-attention scheme improves on.
Features are L2-normalised over channels; the released CoCosNet also centres them over the
feature dimension and matches 3x3 neighbourhoods (``centre``, ``match_kernel``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.checks import check_values
from evalkit.methods.alignment.correspondence import DenseCorrespondence


def check_features(query: torch.Tensor, key: torch.Tensor) -> None:
    """Both ``[B, C, H, W]`` floats with equal B and C and finite values."""
    for name, t in (("query", query), ("key", key)):
        if t.dim() != 4:
            raise EvalkitError(f"{name} features must be [B, C, H, W], got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise EvalkitError(f"{name} features must be a float tensor, got {t.dtype}")
        if check_values() and not torch.isfinite(t).all():
            raise EvalkitError(f"{name} features contain NaN or inf; check the encoder output")
    if query.shape[:2] != key.shape[:2]:
        raise EvalkitError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in batch or channels; "
            "both encoders must give the same [B, C]")


def cosine_similarity(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[B, N, M]`` between features ``x [B, C, N]`` and ``z [B, C, M]``."""
    x = F.normalize(x, dim=1)
    z = F.normalize(z, dim=1)
    return torch.bmm(x.transpose(1, 2), z)


def dense_cosine_attention(query: torch.Tensor, key: torch.Tensor, *,
                           temperature: float = 0.01, centre: bool = False,
                           match_kernel: int = 1) -> DenseCorrespondence:
    """CoCosNet correspondence ``softmax(cos / temperature)`` from ``key`` onto ``query``.

    Args:
        query: ``[B, C, H, W]`` conditional-input features (rows of the matrix).
        key: ``[B, C, h, w]`` exemplar features (columns).
        temperature: softmax temperature (CoCosNet: 0.01).
        centre: subtract each position's mean over the feature dimension before the cosine
            (CoCosNet's released ``--PONO_C``: ``theta - theta.mean(dim=1)``).
        match_kernel: match ``k x k`` neighbourhoods (the features unfolded, zero padded, to
            ``C k^2`` dimensions; the released code's ``--match_kernel``, default 3).

    Returns:
        A :class:`DenseCorrespondence` with the ``[B, HW, hw]`` matrix and, as confidence,
        the peak cosine of every query position (``[B, 1, H, W]``).
    """
    check_features(query, key)
    if temperature <= 0:
        raise EvalkitError(f"temperature must be > 0, got {temperature}")
    if int(match_kernel) != match_kernel or match_kernel < 1 or match_kernel % 2 == 0:
        raise EvalkitError(f"match_kernel must be an odd integer >= 1, got {match_kernel}")
    b, _, h, w = query.shape

    def prepare(x):
        flat = x.flatten(2) if match_kernel == 1 else F.unfold(x, match_kernel, padding=match_kernel // 2)
        return flat - flat.mean(dim=1, keepdim=True) if centre else flat

    logits = cosine_similarity(prepare(query), prepare(key)).div_(temperature)
    confidence = (logits.amax(dim=2) * temperature).reshape(b, 1, h, w)
    weights = torch.softmax(logits, dim=2)
    return DenseCorrespondence(weights, (h, w), tuple(key.shape[-2:]), confidence)
