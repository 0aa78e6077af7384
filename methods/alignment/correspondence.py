"""`Correspondence`: the result of any alignment, able to warp exemplar-side tensors.

Every alignment module in :mod:`evalkit.methods.alignment` (dense cosine, ranking-and-attention,
unbalanced optimal transport, dense or streaming) returns a :class:`Correspondence`.
It keeps only what it needs to warp: a dense ``[B, Lq, Lk]`` matrix for small grids,
block indices plus block attention for RAS, or the two dual potentials for streaming OT,
so that nothing of size ``Lq x Lk`` is built when the method does not need it.

``warp(values)`` moves any exemplar-side tensor (image, features, one-hot labels) onto
the query grid: ``out[:, :, q] = sum_k W[q, k] * values[:, :, k]`` where ``W`` is the
(row-normalised) correspondence.  ``values`` may come at another resolution than the
key grid; it is resized to the key grid first (area averaging when shrinking, bilinear
interpolation when enlarging).

``warp_back(values)`` is the transpose: query-grid values back onto the key grid with
``W^T`` normalised over its columns, ``out[:, :, k] = sum_q W[q, k] values[:, :, q] /
sum_q W[q, k]`` (an average of query values again; key positions no query attends to get
0).  ``warp_back(warp(Z))`` is the cycle ``T^T T Z`` of RABIT eq. 4 / UNITE eq. 8.  Each
class applies it from what it stores (dense: the matrix; RAS: a scatter over the
retrieved blocks, ``O(N k b^2)``; potentials: the plan rebuilt chunk by chunk), never
building an ``L x L`` matrix it did not already hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError


def resize_to(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``values [B, C, H, W]`` to ``size``: area when shrinking, bilinear otherwise."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    shrinking = values.shape[-2] >= size[0] and values.shape[-1] >= size[1]
    if shrinking:
        return F.adaptive_avg_pool2d(values, size)
    return F.interpolate(values, size=size, mode="bilinear", align_corners=False)


class Correspondence(ABC):
    """A correspondence from a key grid ``key_size`` onto a query grid ``size``.

    Attributes:
        size: query grid ``(H, W)``; ``warp`` returns tensors of this spatial size.
        key_size: key (exemplar) grid ``(h, w)`` the correspondence indexes.
        confidence: ``[B, 1, H, W]`` reliability of each query position, or None.
    """

    def __init__(self, size: tuple[int, int], key_size: tuple[int, int], batch: int,
                 confidence: torch.Tensor | None = None):
        self.size = (int(size[0]), int(size[1]))
        self.key_size = (int(key_size[0]), int(key_size[1]))
        self.batch = int(batch)
        self.confidence = confidence

    @abstractmethod
    def _apply(self, flat: torch.Tensor) -> torch.Tensor:
        """Map ``[B, C, Lk]`` exemplar values to ``[B, C, Lq]`` query values."""

    @abstractmethod
    def _apply_t(self, flat: torch.Tensor) -> torch.Tensor:
        """``W^T`` (not normalised): ``[B, C, Lq]`` query values to ``[B, C, Lk]`` key values."""

    def warp(self, values: torch.Tensor) -> torch.Tensor:
        """Warp ``values [B, C', h', w']`` onto the query grid: ``[B, C', H, W]``."""
        if values.dim() != 4:
            raise EvalkitError(
                f"warp expects values shaped [B, C, H, W], got {tuple(values.shape)}; "
                "add the missing batch/channel dimension")
        if values.shape[0] != self.batch:
            raise EvalkitError(
                f"warp got a batch of {values.shape[0]} but the correspondence was built for "
                f"{self.batch}; pass the exemplar tensors of the same batch")
        if not values.is_floating_point():
            values = values.float()
        values = resize_to(values, self.key_size)
        b, c = values.shape[:2]
        out = self._apply(values.reshape(b, c, -1))
        return out.reshape(b, c, *self.size)

    def warp_back(self, values: torch.Tensor) -> torch.Tensor:
        """Column-normalised transpose: query-grid ``values [B, C', H', W']`` onto the key grid ``[B, C', h, w]``."""
        if values.dim() != 4 or values.shape[0] != self.batch:
            raise EvalkitError(
                f"warp_back expects values shaped [B={self.batch}, C, H, W], got {tuple(values.shape)}")
        if not values.is_floating_point():
            values = values.float()
        values = resize_to(values, self.size)
        b, c = values.shape[:2]
        flat = values.reshape(b, c, -1)
        num = self._apply_t(flat)
        mass = self._apply_t(torch.ones_like(flat[:, :1]))
        out = num / mass.clamp_min(torch.finfo(num.dtype).tiny)
        return out.reshape(b, c, *self.key_size)

    def matrix(self) -> torch.Tensor:
        """The dense ``[B, Lq, Lk]`` warping matrix (for tests and small grids only)."""
        lk = self.key_size[0] * self.key_size[1]
        eye = torch.eye(lk, device=self.device, dtype=self.dtype)
        eye = eye.unsqueeze(0).expand(self.batch, lk, lk)
        return self._apply(eye).transpose(1, 2)

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...


class DenseCorrespondence(Correspondence):
    """A materialised ``[B, Lq, Lk]`` warping matrix (rows sum to one)."""

    def __init__(self, weights: torch.Tensor, size, key_size, confidence=None):
        super().__init__(size, key_size, weights.shape[0], confidence)
        self.weights = weights

    def _apply(self, flat):
        return torch.bmm(flat.to(self.weights.dtype), self.weights.transpose(1, 2))

    def _apply_t(self, flat):
        return torch.bmm(flat.to(self.weights.dtype), self.weights)

    def matrix(self):
        return self.weights

    @property
    def device(self):
        return self.weights.device

    @property
    def dtype(self):
        return self.weights.dtype


class BlockCorrespondence(Correspondence):
    """Ranking-and-attention result: per query block, ``k`` retrieved key blocks.

    ``indices [B, N, k]`` are the retrieved key blocks of every query block and
    ``attention [B, N, b, k*b]`` the dense attention between the ``b`` positions of a
    query block and the ``k*b`` positions of its retrieved blocks (rows sum to one).
    Blocks are ``block x block`` squares in raster order.
    """

    def __init__(self, indices, attention, block: int, size, key_size, confidence=None):
        super().__init__(size, key_size, indices.shape[0], confidence)
        self.indices = indices
        self.attention = attention
        self.block = block

    def _apply(self, flat):
        b, c, _ = flat.shape
        s = self.block
        blocks = to_blocks(flat.reshape(b, c, *self.key_size), s)  # [B, Nk, s*s, C]
        n, k = self.indices.shape[1:]
        gathered = torch.gather(
            blocks, 1,
            self.indices.reshape(b, n * k, 1, 1).expand(b, n * k, s * s, c))
        gathered = gathered.reshape(b, n, k * s * s, c).to(self.attention.dtype)
        out = torch.matmul(self.attention, gathered)  # [B, N, s*s, C]
        return from_blocks(out, s, self.size).reshape(b, c, -1)

    def _apply_t(self, flat):
        """``W^T v``: each query block's attention, transposed, scattered onto its retrieved key blocks."""
        b, c, _ = flat.shape
        s = self.block
        n, k = self.indices.shape[1:]
        q_blocks = to_blocks(flat.reshape(b, c, *self.size), s).to(self.attention.dtype)  # [B, N, s*s, C]
        contrib = torch.matmul(self.attention.transpose(-1, -2), q_blocks)  # [B, N, k*s*s, C]
        contrib = contrib.reshape(b, n * k, s * s, c)
        n_key = (self.key_size[0] // s) * (self.key_size[1] // s)
        out = contrib.new_zeros(b, n_key, s * s, c).scatter_add(
            1, self.indices.reshape(b, n * k, 1, 1).expand(b, n * k, s * s, c), contrib)
        return from_blocks(out, s, self.key_size).reshape(b, c, -1)

    @property
    def device(self):
        return self.attention.device

    @property
    def dtype(self):
        return self.attention.dtype


class PotentialCorrespondence(Correspondence):
    """Entropic transport kept as dual potentials; the plan is rebuilt chunk by chunk.

    ``warp`` applies the barycentric projection ``T z / T 1`` of the plan
    ``T_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` without ever holding ``T``
    (see :func:`evalkit.methods.alignment.transport.transport_apply`).
    """

    def __init__(self, potentials, size, key_size, confidence=None):
        super().__init__(size, key_size, potentials.f.shape[0], confidence)
        self.potentials = potentials

    def _apply(self, flat):
        from evalkit.methods.alignment.transport import transport_apply

        return transport_apply(self.potentials, flat)

    def _apply_t(self, flat):
        """``W^T v`` with ``W = T / (T 1)``: the plan with masses ``(a / T1, b)`` read with rows and columns swapped."""
        from evalkit.methods.alignment.transport import transport_apply_t

        return transport_apply_t(self.potentials, flat)

    @property
    def device(self):
        return self.potentials.f.device

    @property
    def dtype(self):
        return self.potentials.f.dtype


def to_blocks(x: torch.Tensor, s: int) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, N, s*s, C]`` with N = (H/s)(W/s) blocks in raster order."""
    b, c, h, w = x.shape
    if h % s or w % s:
        raise EvalkitError(
            f"a {h}x{w} grid cannot be split into {s}x{s} blocks; use a size divisible by {s}")
    x = x.reshape(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // s) * (w // s), s * s, c)


def from_blocks(x: torch.Tensor, s: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: ``[B, N, s*s, C]`` → ``[B, C, H, W]``."""
    b, _, _, c = x.shape
    h, w = size
    x = x.reshape(b, h // s, w // s, s, s, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h, w)
