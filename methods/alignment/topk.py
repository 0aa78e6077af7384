r"""Differentiable top-k as an entropic earth mover's problem (Xie et al., NeurIPS 2020).

RABIT §3.1 retrieves the top-k key blocks of every query block through this operator.
For scores ``s_1..s_N`` and two anchors ``y_low < y_high``, with cost ``C_ij = (s_i - y_j)^2``,
source marginal ``mu_i = 1/N`` and target marginal ``nu = [(N-k)/N, k/N]`` (mass ``k/N`` on
``y_high``), solve the entropic OT problem::

    Gamma = argmin <C, Gamma> + eps KL(Gamma | mu nu^T)   s.t.  Gamma 1 = mu, Gamma^T 1 = nu

and return the membership ``N * Gamma[:, high]`` (in [0, 1], summing to k; the exact
top-k indicator as ``eps -> 0``).  The anchors may be ``{0, 1}`` (Xie et al.) or ``{-1, 1}``
(RABIT, for cosine scores).

**Cost normalisation.** As Xie et al.'s released ``TopK_custom`` (and RABIT's copy of it),
the cost is divided by its largest entry, ``C / max_ij C_ij`` (per problem here), so ``eps``
is in units of the largest squared score-to-anchor distance and the same ``eps`` means the
same softness whatever the anchors (``normalise=False`` keeps the raw cost).  Xie et al.
detach the normaliser; evalkit differentiates it too, so the returned gradient is the exact
derivative of the returned membership.

**Solver.** With two targets the dual has a single free variable: eliminating the row
potentials gives ``N Gamma_i,high = sigmoid((delta - D_i) / eps)`` with
``D_i = C_i,high - C_i,low``, and the column constraint is the monotone scalar equation
``sum_i sigmoid((delta - D_i) / eps) = k``.  It is solved per problem by safeguarded
Newton on ``log(sum) - log(k)`` (bisection fallback): the fixed point Sinkhorn iterations
approach, with both marginals met to solver tolerance. Newton starts from an estimate on a
few hundred entries per row (the smallest D and an even sample of the rest), so the full
rows are swept once or twice rather than once per iteration.  **Gradient**: implicit
differentiation of that equation (as RABIT/Xie et al. do), exact and ``O(N)`` per problem:
``dL/dD_l = s'_l / eps * (sum_i g_i s'_i / sum_i s'_i - g_l)``, ``s' = m (1 - m)``.
"""

from __future__ import annotations

import math

import torch

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.checks import check_values

__all__ = ["ot_topk", "ot_topk_largest", "ot_topk_largest_of_products", "hard_topk_straight_through"]


def _check(scores: torch.Tensor, k: int) -> int:
    if scores.dim() < 1 or scores.shape[-1] < 1:
        raise EvalkitError(f"scores must be [..., N] with N >= 1, got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise EvalkitError(f"scores must be floating point, got {scores.dtype}")
    if check_values() and not torch.isfinite(scores).all():
        raise EvalkitError("scores contain NaN or inf; check the similarities they came from")
    n = scores.shape[-1]
    if int(k) != k or not 1 <= k <= n:
        raise EvalkitError(f"k must be an integer in [1, N={n}], got k={k}")
    return int(k)


CANDIDATES = 16  # smallest cost differences per row that start the threshold's estimate
SAMPLE = 256  # evenly spaced entries per row that stand in for the rest in that estimate


def _newton(u, weight, k, lo, hi, theta, n_iters, atol, members=True, work=None):
    """Safeguarded Newton on ``log(sum_i w_i sigmoid(theta - u_i)) - log(k)`` per row, in units
    of eps (``u = D / eps``, ``theta = delta / eps``; bisection inside ``[lo, hi]`` where a step
    leaves it), each row until ``|sum - k| <= atol``. ``weight``: ``w [R, N]`` or None (all 1).
    Rows are dropped as they converge, so later iterations touch only the rows still open.
    ``work``: a :class:`_Workspace` whose buffers the passes write into (``members=False``
    only: the memberships returned must not be a reused buffer). Returns ``(theta, m)``, ``m``
    the memberships at the returned ``theta`` (None unless ``members``)."""
    n_rows = u.shape[0]
    rows = torch.arange(n_rows, device=u.device)
    out = torch.empty_like(u) if members else None
    tiny = torch.finfo(u.dtype).tiny
    for it in range(n_iters + 1):
        full = len(rows) == n_rows
        gathered, written = (None, None) if work is None else (work.open_rows[:len(rows)], work.members[:len(rows)])
        d = u if full else torch.index_select(u, 0, rows, out=gathered)
        m = torch.sub((theta if full else theta[rows]).unsqueeze(-1), d, out=written).sigmoid_()
        w = None if weight is None else (weight if full else weight[rows])
        wm = m if w is None else m * w
        total = wm.sum(-1)
        h = total - k
        done = (h.abs() <= atol) | (it == n_iters)  # the last pass keeps what it has (as before)
        if members:
            if full and bool(done.all()):
                return theta, m
            out[rows[done]] = m[done]
        if done.all():
            break
        open_ = ~done
        slope = wm.addcmul_(wm, m, value=-1).sum(-1)[open_]  # sum w m (1 - m); m is spent
        r, t, hh = rows[open_], total[open_], h[open_]
        lo[r] = torch.where(hh < 0, theta[r], lo[r])
        hi[r] = torch.where(hh > 0, theta[r], hi[r])
        # Newton on log(sum) - log(k): exact on an exponential tail, where plain Newton crawls
        newton = theta[r] - (t.log() - math.log(k)) * t / slope.clamp_min(tiny)
        inside = (newton > lo[r]) & (newton < hi[r]) & (slope > 0)
        theta[r] = torch.where(inside, newton, 0.5 * (lo[r] + hi[r]))
        rows = r
    return theta, out


def _solve_membership(diff, k, eps, n_iters, atol, smallest=None, members=True, work=None):
    """Memberships ``sigmoid(theta - D_i / eps)`` with ``theta`` (``delta / eps``) the root of
    ``sum_i sigmoid(theta - D_i / eps) = k`` per row, to ``atol`` on the full rows.

    The root is bracketed by the k-th and (k+1)-th smallest D (at ``d_k - margin`` the
    ``N - k + 1`` largest terms are each below ``e^-20 / N``, so the sum is below k; at
    ``d_k1 + margin`` the k + 1 smallest are each above ``1 - e^-20 / N``). It is first
    estimated on a small stand-in for each row, its CANDIDATES smallest D plus SAMPLE evenly
    spaced others weighted for the rest, and then refined by Newton on the full rows with the
    same stopping rule as always. Only the refinement touches every entry (one or two passes
    where the estimate is good); the result is the same root, to the same tolerance.
    ``smallest``: the row's ``min(N, max(k + 1, CANDIDATES))`` smallest D, ascending, when the
    caller has them. ``work``: as :func:`_newton`'s. Returns ``(theta, m)``, ``m`` evaluated at
    ``theta`` (None unless ``members``)."""
    n = diff.shape[-1]
    c = min(n, max(k + 1, CANDIDATES))
    u = diff / eps if eps != 1.0 else diff
    if smallest is None:
        smallest = u.topk(c, dim=-1, largest=False).values  # ascending
    elif eps != 1.0:
        smallest = smallest / eps
    u_k, u_k1 = smallest[..., k - 1], smallest[..., k]
    margin = math.log(n) + 20.0
    lo, hi = u_k - margin, u_k1 + margin
    theta = 0.5 * (u_k + u_k1)  # the eps -> 0 solution
    if n > c + SAMPLE:
        step = n // SAMPLE
        sample = u[:, ::step][:, :SAMPLE]
        rest = sample > smallest[:, -1:]  # not a candidate
        weight = (n - c) / rest.sum(-1, keepdim=True).clamp_min(1) * rest
        stand_in = torch.cat([smallest, sample], -1)
        ones = torch.ones_like(smallest)
        theta, _ = _newton(stand_in, torch.cat([ones, weight.to(diff.dtype)], -1), k, lo.clone(),
                           hi.clone(), theta, n_iters, atol, members=False)
        theta = theta.clamp(lo, hi)
    return _newton(u, None, k, lo, hi, theta, n_iters, atol, members, work)


def _atol(tol, k, n, dtype):
    # summing N memberships in this dtype is only accurate to about N * machine eps
    return tol * k + n * torch.finfo(dtype).eps


class _TwoAnchorOT(torch.autograd.Function):
    """Membership ``m [R, N]`` from cost differences ``D [R, N]`` (see module docstring)."""

    @staticmethod
    def forward(ctx, diff, k, eps, n_iters, tol):
        atol = _atol(tol, k, diff.shape[-1], diff.dtype)
        m = _solve_membership(diff, k, eps, n_iters, atol)[1]
        ctx.save_for_backward(m)
        ctx.eps = eps
        return m

    @staticmethod
    def backward(ctx, grad):
        (m,) = ctx.saved_tensors
        sp = m - m * m
        total = sp.sum(-1, keepdim=True)
        mean = torch.where(total > 0, (grad * sp).sum(-1, keepdim=True) / total.clamp_min(
            torch.finfo(m.dtype).tiny), torch.zeros_like(total))
        return sp.mul_(mean - grad).div_(ctx.eps), None, None, None, None


def _cost_difference(flat: torch.Tensor, low: float, high: float, normalise: bool) -> torch.Tensor:
    """``D_i = C_i,high - C_i,low = (low - high)(2 s_i - high - low)``: the difference of the
    two squared distances without their cancellation. ``normalise``: over the problem's largest
    cost ``max_ij C_ij``, which a convex cost takes at the row's largest or smallest score."""
    slope, offset = 2.0 * (low - high), (high - low) * (high + low)
    if not normalise:
        return flat * slope + offset
    cmax = _corner_costs(flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True), low, high).amax(-1, keepdim=True)
    return torch.addcmul(offset / cmax, flat, slope / cmax)


def _corner_costs(smax: torch.Tensor, smin: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``[..., 4]`` costs ``(smax - low)^2, (smin - low)^2, (smax - high)^2, (smin - high)^2``
    of a row's extreme scores ``[..., 1]``: its largest cost ``max C`` is their maximum."""
    return torch.cat([(smax - low) ** 2, (smin - low) ** 2, (smax - high) ** 2, (smin - high) ** 2], -1)


def ot_topk(scores: torch.Tensor, k: int, *, eps: float = 1e-1, n_iters: int = 60,
            anchors: tuple[float, float] = (0.0, 1.0), tol: float = 1e-6,
            normalise: bool = True) -> torch.Tensor:
    """Soft top-k membership of ``scores [..., N]`` along the last axis (Xie et al. 2020).

    Args:
        scores: ``[..., N]`` scores; each row is an independent problem.
        k: how many to select (1 <= k <= N).
        eps: entropic regularisation, in units of the normalised cost ``C / max C`` (default
            0.1, Xie et al.'s); with ``normalise=False`` in units of the raw ``(s - y)^2``.
        n_iters: maximum Newton/bisection iterations per problem.
        anchors: ``(y_low, y_high)``; ``(0, 1)`` as Xie et al., ``(-1, 1)`` as RABIT.
        tol: stop when every ``|sum(membership) - k| <= tol * k + N * machine_eps``.
        normalise: divide each problem's cost by its largest entry (Xie et al.).

    Returns:
        Membership ``[..., N]`` in [0, 1] summing to ``k`` per row, differentiable
        (implicit gradient).
    """
    k = _check(scores, k)
    if not eps > 0:
        raise EvalkitError(f"eps must be > 0, got {eps}")
    lo_anchor, hi_anchor = float(anchors[0]), float(anchors[1])
    if not lo_anchor < hi_anchor:
        raise EvalkitError(f"anchors must be (low, high) with low < high, got {anchors}")
    if k == scores.shape[-1]:
        return scores * 0 + 1  # every element selected; keeps the graph, zero gradient
    shape = scores.shape
    diff = _cost_difference(scores.reshape(-1, shape[-1]), lo_anchor, hi_anchor, normalise)
    m = _TwoAnchorOT.apply(diff, k, float(eps), int(n_iters), float(tol))
    return m.reshape(shape)


TILE_ELEMENTS = 1 << 21
"""Scores per row tile of :func:`ot_topk_largest` (8 MiB float32): a tile's scores and cost
differences stay in the CPU's cache through the passes over them."""

GROUP = 32
"""Entries per group in :func:`_extremes`' exact top-c search."""


def _extremes(x: torch.Tensor, c: int, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(c, dim=-1, largest=largest)`` of rows ``x [R, N]``, sorted, by a group search.

    Exact: split each row into groups of GROUP entries; the c largest entries lie in the c
    groups with the largest maxima (an entry outside them is exceeded by those c maxima), so
    ``topk`` runs on those ``c * GROUP`` entries (and the ``N mod GROUP`` left over) only. One
    ``amax`` pass replaces ``topk``'s selection over the full row (several times faster on a CPU).
    Where entries tie, which of them is returned may differ from ``torch.topk``."""
    rows, n = x.shape
    groups = n // GROUP
    if groups < 4 * c:
        return x.topk(c, dim=-1, largest=largest)
    view = x.as_strided((rows, groups, GROUP), (x.stride(0), GROUP * x.stride(1), x.stride(1)))
    best = view.amax(-1) if largest else view.amin(-1)
    chosen = best.topk(c, dim=-1, largest=largest).indices
    cols = (chosen.unsqueeze(-1) * GROUP + torch.arange(GROUP, device=x.device)).reshape(rows, -1)
    if groups * GROUP < n:
        left = torch.arange(groups * GROUP, n, device=x.device).expand(rows, -1)
        cols = torch.cat([cols, left], -1)
    values, at = x.gather(-1, cols).topk(c, dim=-1, largest=largest)
    return values, cols.gather(-1, at)


def _normaliser(flat, top, top_index, low, high):
    """Each row's largest cost ``max C`` (:func:`_cost_difference`), and where it is taken:
    ``(cmax, position, anchor)`` with ``cmax = (s[position] - anchor)^2``. ``top``,
    ``top_index``: the row's largest score and its position (from its top-k)."""
    smax, imax = top, top_index
    smin, imin = _extremes(flat, 1, largest=False)
    cmax, which = _corner_costs(smax, smin, low, high).max(-1, keepdim=True)
    position = torch.where(which % 2 == 0, imax, imin)
    anchor = torch.where(which < 2, torch.full_like(cmax, low), torch.full_like(cmax, high))
    return cmax, position, anchor


def _row_factors(cmax, eps, low, high):
    """``(scale, shift)`` of ``u = D / eps = scale s + shift`` per row (:func:`_cost_difference`
    over the row's ``cmax``), ``scale = slope / (cmax eps)``, ``shift = offset / (cmax eps)``."""
    slope, offset = 2.0 * (low - high), (high - low) * (high + low)
    return slope / (cmax * eps), offset / (cmax * eps)


def _affine(x, scale, shift, out=None):
    """``scale x + shift`` per row (into ``out`` if given); the forward and the backward share
    it, so the backward's memberships are the forward's bit for bit."""
    return torch.mul(x, scale, out=out).add_(shift)


class _Workspace:
    """The ``[rows, N]`` buffers one call's row tiles reuse, each tile writing into them instead of
    into new memory: the cost differences ``u``, the memberships of a Newton pass and the open
    rows it gathers. A fresh 8 MiB block per pass is page-faulted in wherever the C allocator
    hands memory back to the OS between passes (with ``MALLOC_MMAP_THRESHOLD_`` set, as
    ``evalkit profile memory``'s child does, RAS's forward at 256² took 4.4 s instead of 1.9 s,
    1.6 M page faults)."""

    def __init__(self, rows, n, like):
        new = lambda: like.new_empty(rows, n)
        self.u, self.members, self.open_rows = new(), new(), new()


class _Tile:
    """The retrieval of ``rows`` rows, solved a tile at a time: the outputs ``values`` and
    ``member`` ``[rows, k]``, and what the backward needs (:meth:`saved`): the selected
    ``indices [rows, k]``, the thresholds ``theta [rows]`` and the normaliser ``(cmax,
    position, anchor)`` ``[rows, 1]``."""

    def __init__(self, rows, k, like):
        new = lambda *shape, dtype=like.dtype: torch.empty(*shape, dtype=dtype, device=like.device)
        self.values, self.member, self.theta = new(rows, k), new(rows, k), new(rows)
        self.indices = new(rows, k, dtype=torch.long)
        self.cmax, self.anchor = new(rows, 1), new(rows, 1)
        self.position = new(rows, 1, dtype=torch.long)

    def saved(self):
        return self.indices, self.theta, self.cmax, self.position, self.anchor

    def solve(self, s, e, scores, k, eps, n_iters, atol, low, high, work):
        """Rows ``s:e`` from their ``scores [e - s, N]``: the k largest, their memberships
        (``work``: the call's :class:`_Workspace`)."""
        c = min(scores.shape[-1], max(k + 1, CANDIDATES))
        top, idx = _extremes(scores, c)
        cmax, position, anchor = _normaliser(scores, top[:, :1], idx[:, :1], low, high)
        scale, shift = _row_factors(cmax, eps, low, high)
        smallest = _affine(top, scale, shift)  # the smallest u, ascending
        u = _affine(scores, scale, shift, out=work.u[:e - s])
        theta = _solve_membership(u, k, 1.0, n_iters, atol, smallest=smallest, members=False, work=work)[0]
        self.member[s:e] = torch.sub(theta.unsqueeze(-1), smallest[:, :k]).sigmoid_()
        self.values[s:e], self.indices[s:e], self.theta[s:e] = top[:, :k], idx[:, :k], theta
        self.cmax[s:e], self.position[s:e], self.anchor[s:e] = cmax, position, anchor


def _tile_gradient(out, scores, saved, grad_values, grad, eps, low, high, u_buffer):
    """``dL/dscores`` of one row tile into ``out [t, N]``, from the tile's ``scores`` and its
    forward's ``saved`` (:meth:`_Tile.saved`, sliced to the tile): the implicit gradient of
    the module docstring, the normaliser's, and the values' own (as ``topk``'s). ``u_buffer``:
    a ``[t, N]`` buffer the cost differences are written into."""
    indices, theta, cmax, position, anchor = saved
    if grad is None:
        return out.zero_().scatter_add_(-1, indices, grad_values)
    tiny = torch.finfo(scores.dtype).tiny
    scale, shift = _row_factors(cmax, eps, low, high)
    u = _affine(scores, scale, shift, out=u_buffer)  # D / eps, as in the forward
    sp = torch.sub(theta.unsqueeze(-1), u, out=out).sigmoid_()  # m
    sp.addcmul_(sp, sp, value=-1)  # m (1 - m)
    sp_sel = sp.gather(-1, indices)
    total = sp.sum(-1, keepdim=True)
    mean = torch.where(total > 0, (grad * sp_sel).sum(-1, keepdim=True) / total.clamp_min(tiny),
                       torch.zeros_like(total))
    # dL/du = m(1-m) (mean - g), g non-zero only at the indices; u = (slope s + offset) /
    # (cmax eps): dL/dcmax = -sum_l dL/du_l u_l / cmax
    weighted = (sp_sel * grad * u.gather(-1, indices)).sum(-1, keepdim=True)
    grad_cmax = -(mean * u.mul_(sp).sum(-1, keepdim=True) - weighted) / cmax
    grad_u = sp.mul_(mean * scale).scatter_add_(-1, indices, -sp_sel * grad * scale)
    grad_u.scatter_add_(-1, position, grad_cmax * 2.0 * (scores.gather(-1, position) - anchor))
    if grad_values is not None:
        grad_u.scatter_add_(-1, indices, grad_values)
    return grad_u


class _LargestMembership(torch.autograd.Function):
    """``(values, indices, memberships) [R, k]`` of the k largest scores of ``[R, N]`` rows."""

    @staticmethod
    def forward(ctx, scores, k, eps, n_iters, tol, low, high):
        rows, n = scores.shape
        atol, tile = _atol(tol, k, n, scores.dtype), max(1, TILE_ELEMENTS // n)
        out, work = _Tile(rows, k, scores), _Workspace(min(tile, rows), n, scores)
        for s in range(0, rows, tile):
            e = min(rows, s + tile)
            out.solve(s, e, scores[s:e], k, eps, n_iters, atol, low, high, work)
        ctx.save_for_backward(scores, *out.saved())
        ctx.constants = (eps, low, high)
        ctx.mark_non_differentiable(out.indices)
        return out.values, out.indices, out.member

    @staticmethod
    def backward(ctx, grad_values, _grad_indices, grad):
        scores, *saved = ctx.saved_tensors
        rows, n = scores.shape
        out = torch.empty_like(scores)
        tile = max(1, TILE_ELEMENTS // n)
        u_buffer = scores.new_empty(min(tile, rows), n)
        for s in range(0, rows, tile):
            e = min(rows, s + tile)
            _tile_gradient(out[s:e], scores[s:e], [t[s:e] for t in saved],
                           None if grad_values is None else grad_values[s:e],
                           None if grad is None else grad[s:e], *ctx.constants, u_buffer[:e - s])
        return out, None, None, None, None, None, None


class _LargestProductMembership(torch.autograd.Function):
    """``(values, indices, memberships) [B, R, k]`` of the k largest entries of each row of
    ``query @ key^T`` (``[B, R, C]``, ``[B, N, C]``) without the ``[R, N]`` products: each row
    tile's are computed into one cache-sized buffer, solved and dropped, and the backward
    recomputes them to form ``dL/dquery = G key`` and ``dL/dkey = G^T query`` tile by tile
    (flash-attention's recomputation)."""

    @staticmethod
    def forward(ctx, query, key, k, eps, n_iters, tol, low, high):
        batch, rows, _ = query.shape
        n = key.shape[1]
        atol, tile = _atol(tol, k, n, query.dtype), max(1, TILE_ELEMENTS // n)
        buffer, work = query.new_empty(min(tile, rows), n), _Workspace(min(tile, rows), n, query)
        solved = []
        for b in range(batch):
            out = _Tile(rows, k, query)
            for s in range(0, rows, tile):
                e = min(rows, s + tile)
                scores = torch.mm(query[b, s:e], key[b].t(), out=buffer[:e - s])
                out.solve(s, e, scores, k, eps, n_iters, atol, low, high, work)
            solved.append(out)
        stack = lambda name: torch.stack([getattr(t, name) for t in solved])
        saved = [stack(name) for name in ("indices", "theta", "cmax", "position", "anchor")]
        ctx.save_for_backward(query, key, *saved)
        ctx.constants = (eps, low, high)
        values, indices, member = (stack(name) for name in ("values", "indices", "member"))
        ctx.mark_non_differentiable(indices)
        return values, indices, member

    @staticmethod
    def backward(ctx, grad_values, _grad_indices, grad):
        query, key, *saved = ctx.saved_tensors
        batch, rows, _ = query.shape
        n = key.shape[1]
        tile = max(1, TILE_ELEMENTS // n)
        want_query, want_key = ctx.needs_input_grad[:2]
        grad_query = torch.zeros_like(query) if want_query else None
        grad_key = torch.zeros_like(key) if want_key else None
        scores_buffer, grad_buffer, u_buffer = (query.new_empty(min(tile, rows), n) for _ in range(3))
        for b in range(batch):
            for s in range(0, rows, tile):
                e = min(rows, s + tile)
                scores = torch.mm(query[b, s:e], key[b].t(), out=scores_buffer[:e - s])
                g = _tile_gradient(grad_buffer[:e - s], scores, [t[b, s:e] for t in saved],
                                   None if grad_values is None else grad_values[b, s:e],
                                   None if grad is None else grad[b, s:e], *ctx.constants, u_buffer[:e - s])
                if want_query:
                    torch.mm(g, key[b], out=grad_query[b, s:e])
                if want_key:
                    grad_key[b].addmm_(g.t(), query[b, s:e])
        return grad_query, grad_key, None, None, None, None, None, None


def _check_retrieval(k, n, eps, anchors):
    if int(k) != k or not 1 <= k <= n:
        raise EvalkitError(f"k must be an integer in [1, N={n}], got k={k}")
    if not eps > 0:
        raise EvalkitError(f"eps must be > 0, got {eps}")
    low, high = float(anchors[0]), float(anchors[1])
    if not low < high:
        raise EvalkitError(f"anchors must be (low, high) with low < high, got {anchors}")
    return int(k), low, high


def ot_topk_largest(scores: torch.Tensor, k: int, *, eps: float = 1e-1, n_iters: int = 60,
                    anchors: tuple[float, float] = (0.0, 1.0),
                    tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` largest scores of each row and their OT top-k memberships, for retrieval.

    Equals ``values, idx = scores.topk(k)`` and ``ot_topk(scores, k, ...).gather(-1, idx)``
    (cost normalised) with the same implicit gradient, but never holds the ``[..., N]``
    memberships or their graph: rows are solved a cache-sized tile at a time, and the
    backward recomputes each tile's memberships from the saved thresholds. Where several
    entries tie for a row's largest or smallest score, the normaliser's gradient goes to one
    of them (``ot_topk`` splits it).

    Returns:
        ``(values [..., k], indices [..., k], memberships [..., k])``; the values and the
        memberships are differentiable (one dense gradient for both).
    """
    _check(scores, k)
    k, low, high = _check_retrieval(k, scores.shape[-1], eps, anchors)
    shape = scores.shape
    if k == shape[-1]:
        values, indices = scores.topk(k, dim=-1)
        return values, indices, values * 0 + 1
    values, indices, member = _LargestMembership.apply(scores.reshape(-1, shape[-1]), k,
                                                       float(eps), int(n_iters), float(tol), low, high)
    return tuple(t.reshape(*shape[:-1], k) for t in (values, indices, member))


def ot_topk_largest_of_products(query: torch.Tensor, key: torch.Tensor, k: int, *,
                                eps: float = 1e-1, n_iters: int = 60,
                                anchors: tuple[float, float] = (0.0, 1.0), tol: float = 1e-6,
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`ot_topk_largest` of the scores ``query @ key^T`` (``[B, R, C]``, ``[B, N, C]``),
    never holding them: RAS's retrieval over its block cosines (§3.1). Each row tile's scores
    are computed in cache, and the backward recomputes them, so memory is ``O(B (R + N) C +
    R k)`` beyond one tile, and the scores never travel to and from main memory. No NaN scan:
    the caller's features are checked.

    Returns:
        ``(values [B, R, k], indices [B, R, k], memberships [B, R, k])``, the values and
        memberships differentiable with respect to ``query`` and ``key``.
    """
    if query.dim() != 3 or key.dim() != 3 or query.shape[::2] != key.shape[::2]:
        raise EvalkitError(f"query and key must be [B, R, C] and [B, N, C], got {tuple(query.shape)} "
                           f"and {tuple(key.shape)}")
    k, low, high = _check_retrieval(k, key.shape[1], eps, anchors)
    if k == key.shape[1]:
        values, indices = torch.bmm(query, key.transpose(1, 2)).topk(k, dim=-1)
        return values, indices, values * 0 + 1
    return _LargestProductMembership.apply(query.contiguous(), key.contiguous(), k, float(eps),
                                           int(n_iters), float(tol), low, high)


def hard_topk_straight_through(scores: torch.Tensor, k: int, *,
                               temperature: float = 0.01) -> torch.Tensor:
    """Hard top-k indicator forward, ``softmax(scores / temperature)`` gradient backward.

    The official RABIT code retrieves with ``softmax(100 * cos)`` and ``k = 1``; this is its
    straight-through form: the forward value is exactly the 0/1 indicator of the ``k``
    largest scores along the last axis, the backward pass is the softmax's.
    """
    k = _check(scores, k)
    if not temperature > 0:
        raise EvalkitError(f"temperature must be > 0, got {temperature}")
    soft = torch.softmax(scores / temperature, dim=-1)
    idx = scores.topk(k, dim=-1).indices
    hard = torch.zeros_like(scores).scatter_(-1, idx, 1.0)
    return hard + (soft - soft.detach())  # exactly the indicator forward
