r"""Entropic unbalanced optimal transport (UNITE §3.1, eq. 2-5), dense and streaming.

The problem (identical to POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=eps,
reg_m=tau)`` with its default ``reg_type='kl'``)::

    min_T  <C, T> + eps KL(T | a b^T) + tau KL(T 1 | a) + tau KL(T^T 1 | b)

with the generalised divergence ``KL(p | q) = sum p log(p / q) - p + q``.  UNITE writes
the entropy as ``-eta H(T)``; against the reference ``a b^T`` it differs only by terms
that are linear in ``T`` and so changes nothing for ``eta = eps``.  ``tau = inf`` gives
balanced entropic OT (``T 1 = a``, ``T^T 1 = b``, as ``ot.sinkhorn``).

Dual form (UNITE eq. 4): the plan is ``T_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``
(eq. 5) and the Sinkhorn iterations are, with ``phi = tau / (tau + eps)``::

    f_i <- -phi eps log sum_j b_j exp((g_j - C_ij) / eps)
    g_j <- -phi eps log sum_i a_i exp((f_i - C_ij) / eps)

**Solver.** Log-domain Sinkhorn with absorption (Schmitzer 2019; Chizat et al. 2018 for
the unbalanced case): the potentials are split as ``f = F + eps log u``; the kernel
``K = a b^T exp((F + G - C) / eps)`` is only rebuilt when the scalings ``u, v`` leave a
safe range, so most iterations are two matrix-vector products (fast), and whenever a
kernel row or column sum underflows the half-step is done exactly with a log-sum-exp
(stable at the paper's ``eps = 1e-4``, where POT's scaling solvers return zeros).

**Stopping rule.** Every 10 iterations, stop when the largest change of a dual potential
over the last iteration, divided by ``eps`` (= the relative change of the scalings
``exp(f / eps)``, the quantity POT's ``sinkhorn_knopp_unbalanced`` thresholds), is below
``tol``.  ``tol=0`` runs exactly ``n_iters`` iterations.

**Gradients.** The dense solvers are differentiated by unrolling (autograd through
every iteration; memory grows with the number of kernel rebuilds).  The streaming
solver never stores the plan: it runs without autograd and ``transport_apply`` rebuilds
the plan from the *detached* converged potentials, so gradients reach the features and
masses through ``C`` and ``a, b`` in eq. 5 (the envelope-theorem gradient of the
transport cost), chunk by chunk with recomputation (``torch.utils.checkpoint``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from evalkit.errors import EvalkitError
from evalkit.methods.alignment.checks import check_values
from evalkit.methods.alignment.correspondence import DenseCorrespondence, PotentialCorrespondence

__all__ = [
    "unbalanced_sinkhorn", "balanced_sinkhorn", "unbalanced_sinkhorn_streaming",
    "transport_apply", "transport_apply_t", "unite_masses", "cosine_cost", "TransportPotentials",
    "UnbalancedTransport", "MASSES", "solve_potentials",
]


# ----------------------------------------------------------------------------- checks

def _check_params(eps: float, tau: float, n_iters: int, tol: float) -> None:
    if not (eps > 0 and math.isfinite(eps)):
        raise EvalkitError(f"eps must be a positive finite number, got {eps}")
    if not tau > 0:
        raise EvalkitError(f"tau must be > 0 (use math.inf for balanced OT), got {tau}")
    if n_iters < 1:
        raise EvalkitError(f"n_iters must be >= 1, got {n_iters}")
    if tol < 0:
        raise EvalkitError(f"tol must be >= 0, got {tol}")


def _check_masses(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, m in (("a", a), ("b", b)):
        if not m.is_floating_point():
            raise EvalkitError(f"mass vector {name} must be floating point, got {m.dtype}")
        if not check_values():
            continue
        if not torch.isfinite(m).all():
            raise EvalkitError(f"mass vector {name} contains NaN or inf")
        if (m < 0).any():
            raise EvalkitError(
                f"mass vector {name} has negative entries (min {m.min().item():.3g}); "
                "masses must be >= 0")
        if (m.sum(-1) <= 0).any():
            raise EvalkitError(f"mass vector {name} has zero total mass")


def _check_problem(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor) -> None:
    if cost.dim() < 2:
        raise EvalkitError(f"cost must be [..., n, m], got shape {tuple(cost.shape)}")
    if a.shape[-1] != cost.shape[-2] or b.shape[-1] != cost.shape[-1]:
        raise EvalkitError(
            f"shape mismatch: a {tuple(a.shape)}, b {tuple(b.shape)}, cost {tuple(cost.shape)}; "
            "need a [..., n], b [..., m], cost [..., n, m]")
    if a.shape[:-1] != cost.shape[:-2] or b.shape[:-1] != cost.shape[:-2]:
        raise EvalkitError(
            f"batch shapes differ: a {tuple(a.shape[:-1])}, b {tuple(b.shape[:-1])}, "
            f"cost {tuple(cost.shape[:-2])}; give a, b and cost the same leading dimensions")
    if not cost.is_floating_point():
        raise EvalkitError(f"cost must be floating point, got {cost.dtype}")
    # one reduction instead of an element-wise test: any NaN/inf makes the sum non-finite
    # (the full test only runs to rule out a finite sum that overflowed)
    if check_values() and not torch.isfinite(cost.detach().sum()) and not torch.isfinite(cost).all():
        raise EvalkitError("cost matrix contains NaN or inf; check the features it came from")
    _check_masses(a, b)


# ----------------------------------------------------------------------------- dense solver

def _log(x: torch.Tensor) -> torch.Tensor:
    """log with log(0) = -inf and a zero gradient there (not NaN)."""
    return torch.where(x > 0, x, torch.ones_like(x)).log().masked_fill(x <= 0, -math.inf)


def _kernel(fa, gb, cost, eps):
    """``exp((fa_i + gb_j - C_ij) / eps)`` with fa = F + eps log a, gb = G + eps log b.

    Exponents are clamped so no entry falls below ``e`` times the dtype's smallest normal
    number: subnormal floats carry almost no precision and make CPU arithmetic tens of
    times slower (rows/columns of zero mass still come out exactly zero, through u, v).
    """
    # a fresh tensor, so the in-place steps below are autograd-safe
    t = torch.sub(fa.unsqueeze(-1) / eps, cost, alpha=1.0 / eps)
    t.add_(gb.unsqueeze(-2) / eps).clamp_(min=math.log(torch.finfo(t.dtype).tiny) + 1.0)
    return t.exp_()


def _lse_rows(h, cost, eps):
    """``log sum_j exp((h_j - C_ij) / eps)`` over the last axis."""
    return torch.logsumexp((h.unsqueeze(-2) - cost) / eps, dim=-1)


def _lse_cols(h, cost, eps):
    return torch.logsumexp((h.unsqueeze(-1) - cost) / eps, dim=-2)


def _row_residual(u, K, v, a, f, tau, a_pos):
    """Relative L1 residual of the row optimality condition after a column update:
    ``||T 1 - a e^{-f / tau}||_1 / ||T 1||_1`` (``T 1 = a`` when balanced), ``f = F + eps log u``;
    the column condition holds exactly after the column update."""
    rows = u * (K @ v.unsqueeze(-1)).squeeze(-1)
    target = a if math.isinf(tau) else a * torch.exp(-f / tau)
    target = torch.where(a_pos, target, torch.zeros_like(target))
    return ((rows - target).abs().sum(-1) / rows.sum(-1).clamp_min(torch.finfo(rows.dtype).tiny)).max().item()


def _sinkhorn_dense(a, b, cost, eps, tau, n_iters, tol, init=None, marginal_tol=0.0, stats=None):
    """Returns ``(plan, f, g)``; ``init`` = warm-start potentials ``(f, g)``. ``marginal_tol > 0``:
    also stop (checked every 10 iterations) once the row-marginal residual (:func:`_row_residual`)
    is below it; ``stats`` (a dict) receives ``iterations`` and the last ``residual``."""
    phi = 1.0 if math.isinf(tau) else tau / (tau + eps)
    damp = 0.0 if math.isinf(tau) else 1.0 / (eps + tau)  # u also carries exp(-F / (eps + tau))
    dt = cost.dtype
    a = a.to(dt)
    b = b.to(dt)
    log_a, log_b = _log(a), _log(b)
    a_pos, b_pos = a > 0, b > 0
    finfo = torch.finfo(dt)
    tiny = math.sqrt(finfo.tiny)
    bound = 0.25 * math.log(finfo.max)

    zero = torch.zeros((), dtype=dt, device=cost.device)
    if init is None:
        # start from the eps -> 0 c-transforms, so every kernel row and column holds an
        # entry exp(0) and nothing underflows at the first step, whatever eps
        with torch.no_grad():
            Fp = torch.where(a_pos, cost.amin(-1), zero)
            Gp = torch.where(b_pos, (cost - Fp.unsqueeze(-1)).amin(-2), zero)
    else:
        Fp = torch.where(a_pos, init[0], zero)
        Gp = torch.where(b_pos, init[1], zero)
    u = torch.ones_like(a)
    v = torch.ones_like(b)

    def rebuild(Fp, Gp):  # zero masses give log = -inf, hence exact zeros in K
        return _kernel(Fp + eps * log_a, Gp + eps * log_b, cost, eps)

    K = rebuild(Fp, Gp)
    for it in range(n_iters):
        # ---- row update
        Kv = (K @ v.unsqueeze(-1)).squeeze(-1)
        if bool(((Kv <= tiny) & a_pos).any()):
            g = Gp + eps * _log(v)
            Fp = torch.where(a_pos, -phi * eps * _lse_rows(g + eps * log_b, cost, eps), zero)
            Gp, u, v = g, torch.ones_like(a), torch.ones_like(b)
            K = rebuild(Fp, Gp)
        else:
            u = torch.where(a_pos, (a / Kv.clamp_min(finfo.tiny)) ** phi * torch.exp(-damp * Fp), zero)
        # ---- column update
        Ktu = (u.unsqueeze(-2) @ K).squeeze(-2)
        if bool(((Ktu <= tiny) & b_pos).any()):
            f = Fp + eps * _log(u)
            Gp = torch.where(b_pos, -phi * eps * _lse_cols(f + eps * log_a, cost, eps), zero)
            Fp, u, v = f, torch.ones_like(a), torch.ones_like(b)
            K = rebuild(Fp, Gp)
        else:
            v = torch.where(b_pos, (b / Ktu.clamp_min(finfo.tiny)) ** phi * torch.exp(-damp * Gp), zero)
        lu, lv = _log(u), _log(v)
        if not math.isinf(tau):
            # translation-invariant step (Sejourne et al. 2022): (f + lam, g - lam) with the
            # lam that maximises the dual; K depends on F + G only, so it is unchanged
            f = torch.where(a_pos, Fp + eps * lu, zero)
            g = torch.where(b_pos, Gp + eps * lv, zero)
            lam = 0.5 * tau * (torch.logsumexp(log_a - f / tau, -1)
                               - torch.logsumexp(log_b - g / tau, -1))
            Fp = torch.where(a_pos, Fp + lam.unsqueeze(-1), zero)
            Gp = torch.where(b_pos, Gp - lam.unsqueeze(-1), zero)
        # ---- absorb large scalings into the potentials
        big = max(lu.masked_fill(~a_pos, 0).abs().max().item(),
                  lv.masked_fill(~b_pos, 0).abs().max().item())
        if big > bound:
            Fp = torch.where(a_pos, Fp + eps * lu, zero)
            Gp = torch.where(b_pos, Gp + eps * lv, zero)
            u, v = torch.ones_like(a), torch.ones_like(b)
            K = rebuild(Fp, Gp)
        # ---- stopping rules
        if marginal_tol > 0 and it % 10 == 9:
            with torch.no_grad():
                res = _row_residual(u, K, v, a, Fp + eps * _log(u), tau, a_pos)
            if stats is not None:
                stats["residual"] = res
            if res < marginal_tol:
                break
        if tol > 0 and it % 10 in (8, 9):  # change over iteration it, every 10th
            with torch.no_grad():
                f = torch.where(a_pos, Fp + eps * _log(u), zero)
                g = torch.where(b_pos, Gp + eps * _log(v), zero)
                if it % 10 == 9:
                    err = max((f - f_prev).abs().max().item(), (g - g_prev).abs().max().item()) / eps
                    if err < tol:
                        break
                f_prev, g_prev = f, g
    if stats is not None:
        stats["iterations"] = stats.get("iterations", 0) + it + 1
    if K.requires_grad:
        plan = u.unsqueeze(-1) * K * v.unsqueeze(-2)
    else:  # K is ours alone: scale it in place
        plan = K.mul_(u.unsqueeze(-1)).mul_(v.unsqueeze(-2))
    return plan, torch.where(a_pos, Fp + eps * _log(u), zero), torch.where(b_pos, Gp + eps * _log(v), zero)


def _anderson(hist_x: list, hist_g: list, x: torch.Tensor, gx: torch.Tensor, memory: int) -> torch.Tensor:
    """One Anderson-accelerated step (type II, Walker & Ni 2011) of the fixed-point map ``x -> G(x)``
    for batched vectors ``[B, m]``: the mixture of the last ``memory + 1`` images ``G(x_k)`` whose
    residuals ``G(x_k) - x_k`` combine to the smallest norm (Tikhonov 1e-10)."""
    hist_x.append(x)
    hist_g.append(gx)
    if len(hist_x) > memory + 1:
        hist_x.pop(0)
        hist_g.pop(0)
    if len(hist_x) < 2:
        return gx
    res = torch.stack([g - h for h, g in zip(hist_x, hist_g)], -1)  # [B, m, k]
    d_res, d_g = res.diff(dim=-1), torch.stack(hist_g, -1).diff(dim=-1)
    gram = d_res.transpose(1, 2) @ d_res
    gram = gram + 1e-10 * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram, d_res.transpose(1, 2) @ res[..., -1:])
    return gx - (d_g @ gamma).squeeze(-1)


@torch.no_grad()
def solve_potentials(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, *, eps: float, tau: float,
                     eps_steps: int = 10, eps_start: float = 2.0, tol: float = 1e-2,
                     n_iters: int = 2000, anderson: int = 3) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Converged dual potentials ``(f [B, n], g [B, m], stats)`` of the problem of
    :func:`unbalanced_sinkhorn`, for a plan that is never differentiated through the iterations.

    Sinkhorn iterations in scaling form (``u = (a / K v)^phi e^{-F / (eps + tau)}``, likewise
    ``v``) in float64, accelerated by Anderson mixing of the last ``anderson + 1`` iterates of
    ``log v`` (:func:`_anderson`; 0 = plain Sinkhorn). Every 10 iterations one plain update
    gives a consistent pair ``(u, v)``; the stage stops once the relative L1 residual of the row
    optimality condition ``||T 1 - a e^{-f / tau}||_1 / ||T 1||_1`` (``T 1 = a`` when balanced;
    the column condition holds exactly after a column update) is below ``tol``; otherwise the
    scalings are absorbed into the potentials (with the translation step of the dense solver,
    and an exact log-sum-exp half-step where a kernel row or column underflowed) and the kernel
    is rebuilt. A non-finite residual (an extrapolation that overflowed) restarts the stage from
    the last absorbed potentials without acceleration. eps is annealed geometrically from
    ``eps_start`` to ``eps`` over ``eps_steps`` warm-started stages, each run to ``tol`` (a final
    stage warm-started from loosely converged ones needs thousands of iterations more).
    Returns the potentials in ``cost``'s dtype; ``stats``: ``residual`` (the last stage's) and
    ``iterations`` (all stages).
    """
    _check_params(eps, tau, n_iters, max(tol, 0.0))
    _check_problem(a, b, cost)
    out_dtype = cost.dtype
    c = cost.double()
    a, b = a.double(), b.double()
    log_a, log_b = _log(a), _log(b)
    a_pos, b_pos = a > 0, b > 0
    accelerate = anderson > 0 and bool(a_pos.all()) and bool(b_pos.all())
    zero = torch.zeros((), dtype=c.dtype, device=c.device)
    F_ = torch.where(a_pos, c.amin(-1), zero)  # the eps -> 0 c-transforms, as the dense solver
    G_ = torch.where(b_pos, (c - F_.unsqueeze(-1)).amin(-2), zero)
    floor, tiny = torch.finfo(c.dtype).tiny, math.sqrt(torch.finfo(c.dtype).tiny)
    total, res = 0, math.nan
    for stage_eps in _eps_schedule(float(eps), int(eps_steps), float(eps_start)):
        phi = 1.0 if math.isinf(tau) else tau / (tau + stage_eps)
        damp = 0.0 if math.isinf(tau) else 1.0 / (stage_eps + tau)

        def rebuild(F_, G_):
            K = _kernel(F_ + stage_eps * log_a, G_ + stage_eps * log_b, c, stage_eps)
            return K, torch.where(a_pos, (a ** phi) * torch.exp(-damp * F_), zero), \
                torch.where(b_pos, (b ** phi) * torch.exp(-damp * G_), zero)

        def half_steps(K, ca, cb, v):
            Kv = torch.bmm(K, v.unsqueeze(-1)).squeeze(-1)
            u = ca * Kv.clamp_min(floor).pow(-phi)
            Ktu = torch.bmm(u.unsqueeze(-2), K).squeeze(-2)
            return Kv, u, Ktu, cb * Ktu.clamp_min(floor).pow(-phi)

        K, ca, cb = rebuild(F_, G_)
        v = torch.ones_like(b)
        hist_x, hist_g, use_aa = [], [], accelerate
        for it in range(n_iters):
            total += 1
            _, _, _, v_next = half_steps(K, ca, cb, v)
            if use_aa:
                v = _anderson(hist_x, hist_g, _log(v), _log(v_next), int(anderson)).exp()
            else:
                v = v_next
            if it % 10 != 9 and it != n_iters - 1:
                continue
            Kv, u, Ktu, v = half_steps(K, ca, cb, v)  # a consistent (u, v) pair
            lu, lv = _log(u), _log(v)
            f, g = F_ + stage_eps * lu, G_ + stage_eps * lv
            rows = u * torch.bmm(K, v.unsqueeze(-1)).squeeze(-1)
            target = a if math.isinf(tau) else torch.where(a_pos, a * torch.exp(-f / tau), zero)
            res = ((rows - target).abs().sum(-1) / rows.sum(-1).clamp_min(floor)).max().item()
            if not math.isfinite(res) and use_aa:  # the extrapolation overflowed: plain iterations
                use_aa, hist_x, hist_g, v = False, [], [], torch.ones_like(b)
                continue
            if res < tol or not math.isfinite(res):
                F_, G_ = f, g
                break
            if bool(((Kv <= tiny) & a_pos).any()) or bool(((Ktu <= tiny) & b_pos).any()):
                f = torch.where(a_pos, -phi * stage_eps * _lse_rows(g + stage_eps * log_b, c, stage_eps), zero)
                g = torch.where(b_pos, -phi * stage_eps * _lse_cols(f + stage_eps * log_a, c, stage_eps), zero)
            if not math.isinf(tau):  # translation-invariant step (Sejourne et al. 2022)
                lam = 0.5 * tau * (torch.logsumexp(log_a - f / tau, -1) - torch.logsumexp(log_b - g / tau, -1))
                f, g = f + lam.unsqueeze(-1), g - lam.unsqueeze(-1)
            F_, G_ = torch.where(a_pos, f, zero), torch.where(b_pos, g, zero)  # absorb, rebuild
            K, ca, cb = rebuild(F_, G_)
            v, hist_x, hist_g = torch.ones_like(b), [], []
    return F_.to(out_dtype), G_.to(out_dtype), {"residual": res, "iterations": total}


def _eps_schedule(eps: float, steps: int, scale: float) -> list[float]:
    """Geometric schedule from ``max(eps, scale)`` down to ``eps`` in ``steps`` stages."""
    if steps < 1:
        raise EvalkitError(f"eps_steps must be >= 1, got {steps}")
    start = max(eps, scale)
    if steps == 1 or start == eps:
        return [eps]
    return [start * (eps / start) ** (i / (steps - 1)) for i in range(steps)]


def unbalanced_sinkhorn(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, *,
                        eps: float, tau: float, n_iters: int = 100, tol: float = 1e-6,
                        eps_steps: int = 1, eps_start: float | None = None) -> torch.Tensor:
    r"""Entropic unbalanced OT plan (UNITE eq. 2-5; POT ``sinkhorn_unbalanced``, KL reg).

    ``min_T <C,T> + eps KL(T | a b^T) + tau KL(T 1 | a) + tau KL(T^T 1 | b)``.

    Args:
        a: ``[..., n]`` source masses (>= 0, need not sum to one).
        b: ``[..., m]`` target masses (>= 0).
        cost: ``[..., n, m]`` cost matrix (finite); its dtype sets the compute dtype.
        eps: entropic regularisation (UNITE's eta; the paper uses 1e-4).
        tau: marginal relaxation (``math.inf`` = balanced).
        n_iters: maximum Sinkhorn iterations (one row + one column update) per stage.
        tol: stopping threshold on the potentials' change / eps (0: run all iterations).
        eps_steps: ``> 1`` anneals eps geometrically from ``max|C|`` down to ``eps`` over
            that many warm-started stages (eps-scaling; Sinkhorn converges slowly at small
            eps without it).  ``1`` = plain Sinkhorn, iteration for iteration POT's.

    Returns:
        The plan ``[..., n, m]``, differentiable (unrolled) in ``a``, ``b`` and ``cost``.
    """
    _check_params(eps, tau, n_iters, tol)
    _check_problem(a, b, cost)
    lead = cost.shape[:-2]
    n, m = cost.shape[-2:]
    a, b, cost = a.reshape(-1, n), b.reshape(-1, m), cost.reshape(-1, n, m)
    init = None
    if eps_start is None:
        eps_start = float(cost.detach().abs().max()) if eps_steps > 1 else float(eps)
    for stage_eps in _eps_schedule(float(eps), int(eps_steps), float(eps_start)):
        plan, f, g = _sinkhorn_dense(a, b, cost, stage_eps, float(tau), int(n_iters), float(tol), init)
        init = (f, g)
    return plan.reshape(*lead, n, m)


def balanced_sinkhorn(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, *,
                      eps: float, n_iters: int = 100, tol: float = 1e-6,
                      eps_steps: int = 1, eps_start: float | None = None) -> torch.Tensor:
    r"""Entropic balanced OT plan: ``min <C,T> + eps KL(T | a b^T)`` s.t. ``T1=a, T^T1=b``.

    The ``tau -> inf`` limit of :func:`unbalanced_sinkhorn` (same as ``ot.sinkhorn``);
    ``a`` and ``b`` must have the same total mass.
    """
    _check_params(eps, math.inf, n_iters, tol)
    _check_problem(a, b, cost)
    sa, sb = a.sum(-1), b.sum(-1)
    if not torch.allclose(sa, sb.to(sa.dtype), rtol=1e-5, atol=0):
        raise EvalkitError(
            f"balanced OT needs equal total masses, got sum(a)={sa.flatten()[0].item():.6g} and "
            f"sum(b)={sb.flatten()[0].item():.6g}; normalise them or use unbalanced_sinkhorn")
    return unbalanced_sinkhorn(a, b, cost, eps=eps, tau=math.inf, n_iters=n_iters, tol=tol,
                               eps_steps=eps_steps, eps_start=eps_start)


# ----------------------------------------------------------------------------- UNITE inputs

MASSES = ("eq3", "softmax", "uniform")


def unite_masses(x: torch.Tensor, z: torch.Tensor, kind: str = "softmax") -> tuple[torch.Tensor, torch.Tensor]:
    r"""UNITE's masses from the cross inner products (eq. 3), in one of three forms.

    Eq. 3: ``alpha_i = x_i . mean_j z_j``, ``beta_j = z_j . mean_i x_i``. Taken literally these
    are negative wherever a feature points away from the other set's mean, and no transport
    problem accepts negative masses. With ``s_i = x^_i . mean_j z^_j`` (L2-normalised features,
    ``s_i`` in [-1, 1]) and likewise ``t_j``:

    * ``"softmax"`` (the official code, ``unite-code``): ``alpha = softmax_i(s)``, ``beta =
      softmax_j(t)``; both sum to one, so the two sides always carry equal totals.
    * ``"eq3"`` (evalkit's reading of the paper, ``unite``): ``alpha_i = exp(s_i) / n``,
      ``beta_j = exp(t_j) / m``: positive, increasing in eq. 3's relevance, *not* normalised, so
      the totals ``mean_i e^{s_i}`` and ``mean_j e^{t_j}`` differ between the sides ("masses of
      different totals", adaptively learnt with the features).
    * ``"uniform"``: ``1 / n`` and ``1 / m`` (classical OT "without learnt unbalanced weights",
      UNITE Fig. 7 / Table 3's SPADE+OT).

    Features ``x [B, C, N]``, ``z [B, C, M]``; returns ``(alpha [B, N], beta [B, M])``.
    """
    if x.dim() != 3 or z.dim() != 3 or x.shape[:2] != z.shape[:2]:
        raise EvalkitError(
            f"unite_masses needs features x [B, C, N] and z [B, C, M], got {tuple(x.shape)} "
            f"and {tuple(z.shape)}")
    if kind not in MASSES:
        raise EvalkitError(f"masses must be one of {', '.join(MASSES)}, got {kind!r}")
    if kind == "uniform":
        return (x.new_full((x.shape[0], x.shape[2]), 1.0 / x.shape[2]),
                z.new_full((z.shape[0], z.shape[2]), 1.0 / z.shape[2]))
    xn, zn = F.normalize(x, dim=1), F.normalize(z, dim=1)
    s = torch.einsum("bcn,bc->bn", xn, zn.mean(2))
    t = torch.einsum("bcm,bc->bm", zn, xn.mean(2))
    if kind == "softmax":
        return torch.softmax(s, dim=1), torch.softmax(t, dim=1)
    return s.exp() / x.shape[2], t.exp() / z.shape[2]


def cosine_cost(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """UNITE's cost ``C_ij = 1 - cos(x_i, z_j)`` ``[B, N, M]`` for ``x [B, C, N]``, ``z [B, C, M]``."""
    if x.dim() != 3 or z.dim() != 3 or x.shape[:2] != z.shape[:2]:
        raise EvalkitError(
            f"cosine_cost needs features x [B, C, N] and z [B, C, M], got {tuple(x.shape)} "
            f"and {tuple(z.shape)}")
    return 1.0 - torch.bmm(F.normalize(x, dim=1).transpose(1, 2), F.normalize(z, dim=1))


# ----------------------------------------------------------------------------- streaming

@dataclass
class TransportPotentials:
    """Converged dual potentials of the cosine-cost problem, enough to rebuild the plan.

    ``T_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with ``C_ij = 1 - x^_i . z^_j``.
    ``x`` ``[B, C, n]`` and ``z`` ``[B, C, m]`` are the L2-normalised features.
    """

    f: torch.Tensor
    g: torch.Tensor
    x: torch.Tensor
    z: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    eps: float
    chunk_size: int
    iterations: int

    def plan(self) -> torch.Tensor:
        """The dense plan ``[B, n, m]`` (small problems and tests only)."""
        cost = 1.0 - torch.bmm(self.x.transpose(1, 2), self.z)
        return _plan_block(self.f, self.g, self.a, self.b, cost, self.eps)


def _plan_block(f, g, a, b, cost, eps):
    return torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2) - cost) / eps + _log(a).unsqueeze(-1)
                     + _log(b).unsqueeze(-2))


EXP_FLOOR = -87.0
"""Exponents are clamped here before ``exp``: below it float32's exp is subnormal, which this
CPU computes about 8x slower (a tile with 20 % of its entries there took 1.25 s instead of
0.16 s). Each clamped term adds at most ``e^-87`` (1.6e-38) to a sum that is at least
``e^-SHIFT_RANGE``, far below the dtype's resolution."""


def _lse_inplace(arg: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp`` that reuses ``arg``'s storage (no autograd; fewer memory passes)."""
    top = arg.amax(dim, keepdim=True)
    return arg.sub_(top).clamp_min_(EXP_FLOOR).exp_().sum(dim).log_().add_(top.squeeze(dim))


TILE_ELEMENTS = 1 << 21
"""Cost entries per tile of the streamed passes (8 MiB float32): small enough to stay in the
CPU's cache between the matmul that writes a tile and the exp and sum that read it (the
fastest of 32-1024 rows at L = 16384, docs/performance.md)."""

TILE_COLUMNS = 2048
"""Key columns per tile of the shifted passes: the ``(C + 2) x 2048`` block of augmented keys
(about 0.5 MiB at C = 64) is reused by every row tile while it is in cache, so a pass reads the
keys from memory once per block instead of once per row tile (at L = 65536 a whole key row is
17 MiB)."""

SHIFT_RANGE = 50.0
"""A row's shifted log-sum (``log sum_j exp(arg_ij - s_i)``) outside ``±SHIFT_RANGE`` is
recomputed from its exact maximum: inside it no term overflows and the sum keeps float32's
relative precision."""


def _tile_rows(m: int, chunk: int) -> int:
    return max(1, min(chunk, max(16, TILE_ELEMENTS // max(m, 1))))


class _TileBuffer:
    """The memory that every ``[B, r, m]`` tile of one streamed pass (``r <= rows``) is written
    into, instead of a fresh block per tile: those are page-faulted in wherever the allocator
    hands them back to the OS between tiles (``evalkit profile memory``'s child: 1.6 M faults,
    4 s of system time for one solve at 128²), and blocks over glibc's 32 MiB mmap ceiling (a
    warp's 1024-row chunks at m = 16384) always are (docs/performance.md). Each tile is a
    contiguous view, so a last, shorter tile takes the same kernels as a fresh tensor would."""

    def __init__(self, batch: int, rows: int, m: int, like: torch.Tensor):
        self.flat = torch.empty(batch * rows * m, dtype=like.dtype, device=like.device)
        self.batch, self.m = batch, m

    def __call__(self, rows: int) -> torch.Tensor:
        return self.flat[:self.batch * rows * self.m].view(self.batch, rows, self.m)


def _exact_lse(h, q, k, eps, rows):
    """``log sum_j exp((h_j - C_ij) / eps)`` per row ``i``, ``C = 1 - q^T k``, max-shifted per tile."""
    shift = (h - 1.0) / eps
    out = torch.empty(q.shape[0], q.shape[2], dtype=q.dtype, device=q.device)
    tile = _TileBuffer(q.shape[0], min(rows, q.shape[2]), k.shape[2], q)
    for s in range(0, q.shape[2], rows):
        arg = torch.baddbmm(shift.unsqueeze(1), q[:, :, s:s + rows].transpose(1, 2), k,
                            alpha=1.0 / eps, out=tile(min(rows, q.shape[2] - s)))  # [B, r, m]
        out[:, s:s + rows] = _lse_inplace(arg, 2)
    return out


class _StreamedLSE:
    r"""One direction of the streamed Sinkhorn update: ``out_i = log sum_j exp((h_j - C_ij) / eps)``
    with ``C_ij = 1 - q_i . k_j`` (rows: ``q = x``, ``k = z``; columns: ``q = z``, ``k = x``).

    Each tile of rows is **one matmul** of augmented features,
    ``[q_i / eps, 1, -s_i] . [k_j, (h_j - 1) / eps, 1] = (h_j - C_ij) / eps - s_i``, then an
    in-place ``exp`` and a sum: the dot product and the exp are the floor, and the tile stays in
    cache between them. The shift ``s_i`` is the row's value from the previous call (the
    potentials move little from one iteration to the next), so no pass for the row maximum is
    needed; on the first call, and for any row whose shifted log-sum leaves ``±SHIFT_RANGE``,
    the exact max-shifted sum is used instead.
    """

    def __init__(self, q: torch.Tensor, k: torch.Tensor, eps: float, chunk: int):
        B, C, n = q.shape
        m = k.shape[2]
        self.q, self.k, self.eps, self.C = q, k, eps, C
        self.rows = _tile_rows(m, chunk)
        self.qa = torch.empty(B, n, C + 2, dtype=q.dtype, device=q.device)
        self.qa[:, :, :C] = q.transpose(1, 2) / eps
        self.qa[:, :, C] = 1.0
        self.ka = torch.empty(B, C + 2, m, dtype=k.dtype, device=k.device)
        self.ka[:, :C] = k
        self.ka[:, C + 1] = 1.0
        self.shift = None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            out = _exact_lse(h, self.q, self.k, self.eps, self.rows)
        else:
            out = self._shifted(h)
        self.shift = out
        return out

    def _shifted(self, h):
        C = self.C
        # -inf (zero mass) would meet 0 * inf inside the matmul; any value far below works
        self.ka[:, C] = ((h - 1.0) / self.eps).clamp_min(-1e30)
        self.qa[:, :, C + 1] = -self.shift
        B, n = self.qa.shape[:2]
        m = self.ka.shape[2]
        cols = min(m, TILE_COLUMNS)
        rows = max(1, min(n, TILE_ELEMENTS // cols))
        sums = torch.zeros(B, n, dtype=self.qa.dtype, device=self.qa.device)
        tile = torch.empty(B, rows, cols, dtype=self.qa.dtype, device=self.qa.device)
        part = torch.empty(B, rows, dtype=self.qa.dtype, device=self.qa.device)
        for c in range(0, m, cols):  # a column block of keys stays in cache for every row tile
            keys = self.ka[:, :, c:c + cols]
            for s in range(0, n, rows):
                r = min(rows, n - s)
                block = tile[:, :r, :keys.shape[2]]
                torch.bmm(self.qa[:, s:s + r], keys, out=block)
                torch.sum(block.clamp_min_(EXP_FLOOR).exp_(), 2, out=part[:, :r])
                sums[:, s:s + r] += part[:, :r]
        log_sums = sums.log_()
        bad = ~(log_sums.abs() < SHIFT_RANGE).all(0)  # also catches nan and inf
        out = log_sums.add_(self.shift)
        if bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            out[:, idx] = _exact_lse(h, self.q[:, :, idx], self.k, self.eps, self.rows)
        return out


def _stream_cmin(h, q, k, chunk):
    """``min_j (C_ij - h_j)`` per row ``i``, ``C = 1 - q^T k``, a tile of rows at a time."""
    rows = _tile_rows(k.shape[2], chunk)
    tile = _TileBuffer(q.shape[0], min(rows, q.shape[2]), k.shape[2], q)
    return torch.cat([1.0 - torch.baddbmm(h.unsqueeze(1), q[:, :, s:s + rows].transpose(1, 2), k,
                                          out=tile(min(rows, q.shape[2] - s))).amax(2)
                      for s in range(0, q.shape[2], rows)], dim=1)


@torch.no_grad()
def unbalanced_sinkhorn_streaming(x: torch.Tensor, z: torch.Tensor, a: torch.Tensor,
                                  b: torch.Tensor, *, eps: float, tau: float,
                                  n_iters: int = 100, tol: float = 1e-6, eps_steps: int = 1,
                                  eps_start: float = 2.0,
                                  chunk_size: int = 1024) -> TransportPotentials:
    r"""Unbalanced Sinkhorn on the cost ``1 - cos(x_i, z_j)`` in ``O((n + m) C)`` memory.

    The same iterations as :func:`unbalanced_sinkhorn` (pure log domain), but each
    log-sum-exp runs over cache-sized tiles of at most ``chunk_size`` rows/columns whose cost
    block is one matmul of the features (:class:`_StreamedLSE`), so no ``n x m`` matrix is
    ever built (peak extra memory ``TILE_ELEMENTS`` plus the augmented features,
    ``2 (C + 2)(n + m)``).  Runs without autograd; see :func:`transport_apply` for the
    gradient.

    Args:
        x: ``[B, C, n]`` query features; z: ``[B, C, m]`` key features.
        a: ``[B, n]``, b: ``[B, m]`` masses (e.g. :func:`unite_masses`).
        tau: marginal relaxation, ``math.inf`` for balanced OT.
        n_iters, tol, eps_steps, eps_start: as in :func:`unbalanced_sinkhorn` (the
            schedule starts at 2 by default, the largest ``1 - cos``); the start point is
            the same c-transform, so both solvers run the same iterations.

    Returns:
        :class:`TransportPotentials` (use :func:`transport_apply` to warp with the plan).
    """
    _check_params(eps, tau, n_iters, tol)
    if x.dim() != 3 or z.dim() != 3 or x.shape[:2] != z.shape[:2]:
        raise EvalkitError(
            f"streaming transport needs features x [B, C, n] and z [B, C, m], got "
            f"{tuple(x.shape)} and {tuple(z.shape)}")
    if a.shape != (x.shape[0], x.shape[2]) or b.shape != (z.shape[0], z.shape[2]):
        raise EvalkitError(
            f"shape mismatch: masses a {tuple(a.shape)}, b {tuple(b.shape)} for features "
            f"{tuple(x.shape)}, {tuple(z.shape)}; need a [B, n], b [B, m]")
    if check_values() and not (torch.isfinite(x).all() and torch.isfinite(z).all()):
        raise EvalkitError("features contain NaN or inf, so the cosine cost would too")
    if chunk_size < 1:
        raise EvalkitError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_masses(a, b)
    xs = F.normalize(x.detach(), dim=1)
    zs = F.normalize(z.detach(), dim=1)
    a = a.detach().to(xs.dtype)
    b = b.detach().to(xs.dtype)
    log_a, log_b = _log(a), _log(b)
    # the dense solver's start: f_i = min_j C_ij, g_j = min_i (C_ij - f_i)
    zero = torch.zeros((), dtype=xs.dtype, device=xs.device)
    f = torch.where(a > 0, _stream_cmin(torch.zeros_like(b), xs, zs, chunk_size), zero)
    g = torch.where(b > 0, _stream_cmin(f, zs, xs, chunk_size), zero)
    it = 0
    for stage_eps in _eps_schedule(float(eps), int(eps_steps), float(eps_start)):
        phi = 1.0 if math.isinf(tau) else tau / (tau + stage_eps)
        row_lse = _StreamedLSE(xs, zs, stage_eps, chunk_size)
        col_lse = _StreamedLSE(zs, xs, stage_eps, chunk_size)
        for _ in range(n_iters):
            it += 1
            f_new = -phi * stage_eps * row_lse(g + stage_eps * log_b)
            g_new = -phi * stage_eps * col_lse(f_new + stage_eps * log_a)
            if not math.isinf(tau):  # translation-invariant step, as in the dense solver
                lam = 0.5 * tau * (torch.logsumexp(log_a - f_new / tau, -1)
                                   - torch.logsumexp(log_b - g_new / tau, -1))
                f_new = f_new + lam.unsqueeze(-1)
                g_new = g_new - lam.unsqueeze(-1)
            f_new = torch.where(a > 0, f_new, torch.zeros_like(f_new))
            g_new = torch.where(b > 0, g_new, torch.zeros_like(g_new))
            err = max((f_new - f).abs().max().item(), (g_new - g).abs().max().item()) / stage_eps
            f, g = f_new, g_new
            if tol > 0 and err < tol:
                break
    return TransportPotentials(f, g, xs, zs, a, b, float(eps), int(chunk_size), it)


def _row_normalised_chunk(f, g, a, b, xs, zs, eps, buffers=None):
    """Rows ``W = T / (T 1)`` of the plan for one chunk of query positions: ``[B, c, m]``.
    ``buffers``: two :class:`_TileBuffer` the chunk is written into (without autograd), so that
    the chunks of one warp reuse memory (a warp at 128²: 1.6-1.8 s with fresh chunks, 0.7 s
    without)."""
    # T_ij / sum_j T_ij = softmax_j((g_j - C_ij) / eps + log b_j): f_i and a_i cancel; the
    # softmax is max-shifted, so a row of tiny plan entries does not underflow to 0 / 0 (the dense
    # module warps with the same softmax)
    del f, a
    bias = ((g - 1.0) / eps + _log(b)).unsqueeze(1)
    arg, rows = (None, None) if buffers is None else (buffer(xs.shape[2]) for buffer in buffers)
    return torch.softmax(torch.baddbmm(bias, xs.transpose(1, 2), zs, alpha=1.0 / eps, out=arg), dim=-1, out=rows)


def _chunk_buffers(p: "TransportPotentials") -> tuple["_TileBuffer", "_TileBuffer"]:
    """The two :class:`_TileBuffer` of :func:`_row_normalised_chunk` for one warp."""
    return tuple(_TileBuffer(p.x.shape[0], min(p.chunk_size, p.x.shape[2]), p.z.shape[2], p.x) for _ in range(2))


def _apply_chunk(f, g, a, b, xs, zs, values, eps, buffers=None):
    return torch.bmm(_row_normalised_chunk(f, g, a, b, xs, zs, eps, buffers), values.transpose(1, 2))  # [B, c, C']


def _apply_t_chunk(f, g, a, b, xs, zs, values, eps, buffers=None):
    return torch.bmm(values, _row_normalised_chunk(f, g, a, b, xs, zs, eps, buffers))  # [B, C', m]


def transport_apply_t(potentials: "TransportPotentials", values: torch.Tensor) -> torch.Tensor:
    """``W^T v`` for the row-normalised plan ``W = T / (T 1)``: query values ``[B, C', n]`` → ``[B, C', m]``.

    The transpose of :func:`transport_apply`'s matrix (not normalised; see
    :meth:`~evalkit.methods.alignment.correspondence.Correspondence.warp_back`), rebuilt
    ``chunk_size`` query rows at a time and summed, so memory stays ``O(chunk_size x m)``.
    """
    p = potentials
    if values.shape[0] != p.x.shape[0] or values.shape[2] != p.x.shape[2]:
        raise EvalkitError(
            f"values {tuple(values.shape)} do not match the transport's query grid "
            f"[B={p.x.shape[0]}, C', n={p.x.shape[2]}]")
    xs, zs = p.x, p.z
    values = values.to(xs.dtype)
    out, buffers = 0, None
    for s in range(0, xs.shape[2], p.chunk_size):
        args = (p.f[:, s:s + p.chunk_size], p.g, p.a[:, s:s + p.chunk_size], p.b,
                xs[:, :, s:s + p.chunk_size], zs, values[:, :, s:s + p.chunk_size], p.eps)
        if torch.is_grad_enabled() and any(t.requires_grad for t in args[:-1]):
            out = out + checkpoint(_apply_t_chunk, *args, use_reentrant=False)
        else:
            buffers = buffers or _chunk_buffers(p)
            out = out + _apply_t_chunk(*args, buffers)
    return out


def transport_apply(plan_or_potentials, values: torch.Tensor) -> torch.Tensor:
    """Barycentric projection ``(T z)_i / (T 1)_i``: warp ``values [B, C', m]`` → ``[B, C', n]``.

    Accepts a dense plan ``[B, n, m]`` or :class:`TransportPotentials`; with potentials the
    plan is rebuilt ``chunk_size`` rows at a time (checkpointed when gradients are on), so
    memory stays ``O(chunk_size x m)``.
    """
    if isinstance(plan_or_potentials, TransportPotentials):
        p = plan_or_potentials
        if values.shape[0] != p.z.shape[0] or values.shape[2] != p.z.shape[2]:
            raise EvalkitError(
                f"values {tuple(values.shape)} do not match the transport's key grid "
                f"[B={p.z.shape[0]}, C', m={p.z.shape[2]}]")
        # the normalised features carry the gradient of the cost; potentials are constants
        xs, zs = p.x, p.z
        out, buffers = [], None
        for s in range(0, xs.shape[2], p.chunk_size):
            args = (p.f[:, s:s + p.chunk_size], p.g, p.a[:, s:s + p.chunk_size], p.b,
                    xs[:, :, s:s + p.chunk_size], zs, values.to(xs.dtype), p.eps)
            if torch.is_grad_enabled() and any(t.requires_grad for t in args[:-1]):
                out.append(checkpoint(_apply_chunk, *args, use_reentrant=False))
            else:
                buffers = buffers or _chunk_buffers(p)
                out.append(_apply_chunk(*args, buffers))
        return torch.cat(out, dim=1).transpose(1, 2)
    plan = plan_or_potentials
    if plan.dim() != 3 or values.dim() != 3 or values.shape[2] != plan.shape[2] \
            or values.shape[0] != plan.shape[0]:
        raise EvalkitError(
            f"values {tuple(values.shape)} do not match the plan {tuple(plan.shape)}; need "
            "values [B, C', m] for a plan [B, n, m]")
    mass = plan.sum(-1, keepdim=True).clamp_min(torch.finfo(plan.dtype).tiny)
    return torch.bmm(values.to(plan.dtype), (plan / mass).transpose(1, 2))


# ----------------------------------------------------------------------------- module

class UnbalancedTransport(nn.Module):
    """UNITE's feature transport (§3.1): masses (eq. 3), cost 1 - cos, UOT plan (eq. 5).

    ``forward(query [B, C, H, W], key [B, C, h, w]) -> Correspondence`` whose ``warp`` is the
    barycentric projection of the plan (rows of ``T`` normalised to sum to one).

    **Schedule, tied to a convergence test.** eps is annealed geometrically from 2 (the
    largest ``1 - cos``) to ``eps`` over ``eps_steps`` warm-started stages; every stage runs
    until the relative L1 residual of the marginal optimality condition,
    ``||T 1 - a e^{-f / tau}||_1 / ||T 1||_1`` (``T 1 = a`` when balanced; the column condition
    holds exactly after each column update), is below ``tol`` (checked every 10 iterations),
    at most ``n_iters`` iterations a stage. The residual and the iteration count of the last
    solve are in ``correspondence.stats`` (``uot_marginal_residual``, ``uot_iterations``; a
    translator writes the worst into ``meta.json``). ``tol = 1e-2`` (1 % of the transported mass
    misplaced) agrees on >= 99 % of the rows' arg-max with a float64 solve run to 1e-6
    (tests/alignment/test_transport.py).

    **Gradient** (the released code's geomloss solver does the same, "last extrapolation"):
    the iterations run without autograd; one differentiable column update from the converged,
    detached row potential ``f`` then gives ``g(a, C)``, and the warp is
    ``W_ij = softmax_j((g_j - C_ij) / eps + log b_j)`` (the row-normalised eq. 5, in which ``f``
    cancels). At convergence its value is the converged plan's; gradients reach the features
    through ``C`` and both masses (``a`` through ``g``, ``b`` directly), and the backward pass
    costs one iteration, not the whole unrolled solve.

    Args:
        eps: entropic regularisation (paper: 1e-4; official code: balanced, 0.025).
        tau: marginal relaxation (ignored when ``balanced``).
        n_iters: maximum Sinkhorn iterations per eps stage; tol: marginal residual to stop at.
        eps_steps: eps-scaling stages (see :func:`unbalanced_sinkhorn`).
        balanced: use balanced OT (the official code's choice).
        chunk_size: when set, use the streaming solver (no ``L x L`` matrix) with this chunk;
            there ``tol`` thresholds the potentials' change over an iteration (divided by eps,
            :func:`unbalanced_sinkhorn_streaming`'s rule) and only the iteration count is reported.
        masses: ``"eq3"``, ``"softmax"`` or ``"uniform"`` (see :func:`unite_masses`).
    """

    def __init__(self, eps: float = 1e-4, tau: float = 1.0, n_iters: int = 2000,
                 balanced: bool = False, tol: float = 1e-2, eps_steps: int = 10,
                 chunk_size: int | None = None, masses: str = "softmax"):
        super().__init__()
        _check_params(eps, tau, n_iters, tol)
        _eps_schedule(eps, eps_steps, 1.0)
        if masses not in MASSES:
            raise EvalkitError(f"masses must be one of {', '.join(MASSES)}, got {masses!r}")
        if balanced and masses == "eq3":
            raise EvalkitError("balanced OT needs masses of equal totals; eq3 masses differ by design "
                               "(use masses='softmax' or 'uniform', or unbalanced OT)")
        self.eps_steps = int(eps_steps)
        self.eps, self.tau, self.n_iters, self.tol = float(eps), float(tau), int(n_iters), float(tol)
        self.balanced = bool(balanced)
        self.chunk_size = chunk_size
        self.masses = masses

    def extra_repr(self) -> str:
        return (f"eps={self.eps}, tau={self.tau}, n_iters={self.n_iters}, tol={self.tol}, masses={self.masses!r}, "
                f"balanced={self.balanced}, eps_steps={self.eps_steps}, chunk_size={self.chunk_size}")

    def forward(self, query: torch.Tensor, key: torch.Tensor):
        from evalkit.methods.alignment.cosine import check_features

        check_features(query, key)
        tau = math.inf if self.balanced else self.tau
        size, key_size = tuple(query.shape[-2:]), tuple(key.shape[-2:])
        x, z = query.flatten(2), key.flatten(2)
        alpha, beta = unite_masses(x, z, self.masses)
        if self.chunk_size is not None:
            pots = unbalanced_sinkhorn_streaming(x, z, alpha, beta, eps=self.eps, tau=tau,
                                                 n_iters=self.n_iters, tol=self.tol,
                                                 eps_steps=self.eps_steps,
                                                 chunk_size=self.chunk_size)
            pots.x, pots.z = F.normalize(x, dim=1), F.normalize(z, dim=1)  # carry gradients
            pots.a, pots.b = alpha, beta
            corr = PotentialCorrespondence(pots, size, key_size)
            corr.stats = {"uot_iterations": pots.iterations}
            return corr
        cost = cosine_cost(x, z)
        f, _, stats = solve_potentials(alpha.detach(), beta.detach(), cost.detach(), eps=self.eps, tau=tau,
                                       eps_steps=self.eps_steps, eps_start=2.0, tol=self.tol, n_iters=self.n_iters)
        phi = 1.0 if math.isinf(tau) else tau / (tau + self.eps)
        log_a, log_b = _log(alpha), _log(beta)
        # one differentiable column update from the converged row potential (f detached)
        g = -phi * self.eps * torch.logsumexp((f.unsqueeze(-1) + self.eps * log_a.unsqueeze(-1) - cost) / self.eps, dim=-2)
        weights = torch.softmax((g.unsqueeze(-2) - cost) / self.eps + log_b.unsqueeze(-2), dim=-1)
        corr = DenseCorrespondence(weights, size, key_size)
        corr.stats = {"uot_marginal_residual": float(stats.get("residual", math.nan)),
                      "uot_iterations": int(stats.get("iterations", 0))}
        return corr
