"""Fixed-point solvers for z* = f(z*), with per-sample stopping and accounting.

Every solver has one signature. `iterate(f, z0, method, ...)` yields a `SolverStep` after each step
(the stream the dashboard draws live); `solve(...)` runs it to the end and returns `(z, stats)`.
Solvers know nothing about models: they see only f, a function of z with shape (B, ...).

One step is one call of f on the batch: step k evaluates f at the solver's point x_k, measures the
residual ||f(x_k) - x_k|| and reports z_k = f(x_k) as the iterate. The solvers differ only in how
they choose x_{k+1}: `fixed_point` (damped Picard), `anderson` (Anderson acceleration) and
`broyden` (limited-memory "good" Broyden on g(x) = f(x) - x).

Per-sample semantics: a sample whose residual falls below tol is *converged* and frozen (it stops
changing) while the others go on; a sample whose residual turns NaN/inf or grows past
`diverge_factor` times its first residual is *diverged* and frozen at its last finite iterate.
Traces hold NaN after a sample's stop step: they are never padded with repeated values. tol = 0
switches the convergence stop off (every sample runs max_iter steps unless it diverges).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .registry import Registry

Fn = Callable[[torch.Tensor], torch.Tensor]


class SolverError(ValueError):
    """Bad solver arguments (unknown method, tolerance out of range)."""


@dataclass
class SolverStep:
    step: int  # 1-based step index
    z: torch.Tensor  # current iterate (B, ...); frozen rows for stopped samples
    rel: torch.Tensor  # (B,) ||f(z) - z|| / ||f(z)|| at this step (NaN once a sample has stopped)
    abs: torch.Tensor  # (B,) ||f(z) - z||
    nfe: int  # function evaluations so far (one call of f on the batch counts one)
    converged: torch.Tensor  # (B,) bool
    diverged: torch.Tensor  # (B,) bool
    stop_step: torch.Tensor  # (B,) int64, the step a sample stopped at, or -1 while it runs
    held_bytes: int = 0  # bytes of history the solver holds (Anderson/Broyden memory)
    fallbacks: int = 0  # sample-steps whose update fell back (singular Anderson LS, skipped Broyden update)


@dataclass
class SolverStats:
    rel_trace: torch.Tensor  # (B, steps), NaN after a sample's stop
    abs_trace: torch.Tensor  # (B, steps)
    nfe: int
    converged: torch.Tensor  # (B,) bool
    diverged: torch.Tensor  # (B,) bool
    stop_step: torch.Tensor  # (B,) int64: the step each sample stopped at (max steps if it never did)
    steps: int = 0
    fallbacks: int = 0
    extra: dict = field(default_factory=dict)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


class _Tracker:
    """Shared per-sample bookkeeping: residuals, convergence, divergence and freezing."""

    def __init__(self, z0: torch.Tensor, tol: float, stop_mode: str, diverge_factor: float):
        B = z0.shape[0]
        self.tol, self.stop_mode, self.diverge_factor = tol, stop_mode, diverge_factor
        self.converged = torch.zeros(B, dtype=torch.bool, device=z0.device)
        self.diverged = torch.zeros(B, dtype=torch.bool, device=z0.device)
        self.stop_step = torch.full((B,), -1, dtype=torch.int64, device=z0.device)
        self.first_abs: torch.Tensor | None = None

    @property
    def active(self) -> torch.Tensor:
        return ~(self.converged | self.diverged)

    @torch.no_grad()  # residuals are diagnostics: never part of an unrolled graph
    def update(self, step: int, z_prev: torch.Tensor,
               fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residuals of f(z_prev) - z_prev; marks stops. Returns (abs, rel, newly diverged mask)."""
        active = self.active
        diff = _flat_norm(fz - z_prev)
        rel = diff / (_flat_norm(fz) + 1e-12)
        if self.first_abs is None:
            self.first_abs = diff.clone()
        bad = ~torch.isfinite(diff) | ~torch.isfinite(rel) | (diff > self.diverge_factor * (self.first_abs + 1e-6))
        crit = rel if self.stop_mode == "rel" else diff
        new_div = active & bad
        new_conv = active & ~bad & (crit < self.tol)
        self.diverged |= new_div
        self.converged |= new_conv
        self.stop_step[new_div | new_conv] = step
        abs_out = torch.where(active, diff, torch.full_like(diff, float("nan")))
        rel_out = torch.where(active, rel, torch.full_like(rel, float("nan")))
        return abs_out, rel_out, new_div

    def step_out(self, step, z, abs_r, rel_r, nfe, held=0, fallbacks=0) -> SolverStep:
        return SolverStep(step=step, z=z, rel=rel_r, abs=abs_r, nfe=nfe, converged=self.converged.clone(),
                          diverged=self.diverged.clone(), stop_step=self.stop_step.clone(),
                          held_bytes=held, fallbacks=fallbacks)


def _mask(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return m.view(-1, *([1] * (like.dim() - 1)))


def _fixed_point(f: Fn, z0: torch.Tensor, tol: float, max_iter: int, stop_mode: str,
                 tau: float = 1.0, diverge_factor: float = 1e4) -> Iterator[SolverStep]:
    """x <- (1 - tau) x + tau f(x) (tau = 1 is plain Picard iteration)."""
    if not 0 < tau <= 2:
        raise SolverError(f"fixed_point damping tau must be in (0, 2], got {tau}")
    tr = _Tracker(z0, tol, stop_mode, diverge_factor)
    x, z = z0, z0
    for step in range(1, max_iter + 1):
        active = tr.active
        fx = f(x)
        abs_r, rel_r, new_div = tr.update(step, x, fx)
        # converged-this-step samples take f(x); diverged ones keep their last finite iterate
        z = torch.where(_mask(active & ~new_div, z), fx, z)
        x_new = (1 - tau) * x + tau * fx if tau != 1.0 else fx
        x = torch.where(_mask(tr.active, x), x_new, x)
        yield tr.step_out(step, z, abs_r, rel_r, nfe=step)
        if not tr.active.any():
            return


class _History:
    """The last m pairs of (B, D) tensors, as (B, n, D) stacks. In place (a ring) when no graph is
    recorded; rebuilt functionally when autograd records, so an unrolled backward sees every step."""

    def __init__(self, m: int, functional: bool):
        self.m, self.functional = m, functional
        self.a: torch.Tensor | None = None
        self.b: torch.Tensor | None = None
        self.count = 0  # pushes so far
        self.last = 0  # slot of the newest pair

    def push(self, a: torch.Tensor, b: torch.Tensor) -> None:
        n = min(self.count, self.m)
        if self.a is None:
            self.a, self.b = a[:, None], b[:, None]
        elif self.functional:
            keep = slice(1, None) if n == self.m else slice(None)
            self.a = torch.cat([self.a[:, keep], a[:, None]], 1)
            self.b = torch.cat([self.b[:, keep], b[:, None]], 1)
        elif n < self.m:  # grow the ring once to its full size, then write in place
            self.a = torch.cat([self.a, a[:, None]], 1)
            self.b = torch.cat([self.b, b[:, None]], 1)
        else:
            slot = self.count % self.m
            self.a[:, slot], self.b[:, slot] = a, b
        self.count += 1
        self.last = self.a.shape[1] - 1 if self.functional or self.count <= self.m else (self.count - 1) % self.m

    @property
    def nbytes(self) -> int:
        return 0 if self.a is None else 2 * self.a.numel() * self.a.element_size()


def _anderson_weights(G: torch.Tensor, lam: float, last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixing weights alpha (B, n), sum 1, minimising ||sum_i alpha_i G_i||^2 + lam ||alpha||^2 over the
    residuals G_i = f(x_i) - x_i (B, n, D).

    The Gram matrix is scaled per sample to unit trace first, so lam is relative to the history's own
    scale (torchdeq adds an absolute lam to the raw Gram matrix). A Gram matrix that will not factor, or
    weights that are not finite, fall back to 100x the regularisation (at least 1e-3), then to a plain
    step from the newest pair (index `last`). Returns (alpha, fell_back mask (B,)).
    """
    B, n, _ = G.shape
    H = G @ G.transpose(1, 2)  # (B, n, n)
    H = H / H.diagonal(dim1=1, dim2=2).sum(dim=1).clamp_min(torch.finfo(G.dtype).tiny)[:, None, None]
    eye = torch.eye(n, dtype=G.dtype, device=G.device).expand(B, n, n)
    ones = torch.ones(B, n, 1, dtype=G.dtype, device=G.device)
    finite_h = torch.isfinite(H).flatten(1).all(dim=1)

    def attempt(reg: float) -> tuple[torch.Tensor, torch.Tensor]:
        Hr = torch.where(finite_h[:, None, None], H, eye) + reg * eye
        L, info = torch.linalg.cholesky_ex(Hr)
        ok = finite_h & (info == 0)
        L = torch.where(ok[:, None, None], L, eye)  # a safe factor for the failed rows (no NaN in any graph)
        a = torch.cholesky_solve(ones, L)[..., 0]  # (B, n)
        s = a.sum(dim=1, keepdim=True)
        ok = ok & torch.isfinite(a).all(dim=1) & (s[:, 0] > 0)
        return a / torch.where(ok[:, None], s, torch.ones_like(s)), ok

    alpha, ok = attempt(lam)
    if bool(ok.all()):
        return alpha, ~ok
    alpha2, ok2 = attempt(max(100.0 * lam, 1e-3))
    plain = torch.zeros_like(alpha)
    plain[:, last] = 1.0
    alpha = torch.where(ok[:, None], alpha, torch.where(ok2[:, None], alpha2, plain))
    return alpha, ~ok


def _anderson(f: Fn, z0: torch.Tensor, tol: float, max_iter: int, stop_mode: str, m: int = 5, lam: float = 1e-4,
              beta: float = 1.0, diverge_factor: float = 1e4) -> Iterator[SolverStep]:
    """Anderson acceleration: x_{k+1} = sum_i alpha_i (x_i + beta g_i) over the last m points, g = f(x) - x."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise SolverError(f"anderson history m must be a positive integer, got {m!r}")
    if not (isinstance(lam, (int, float)) and lam >= 0):
        raise SolverError(f"anderson regularisation lam must be a number >= 0, got {lam!r}")
    if not (isinstance(beta, (int, float)) and 0 < beta <= 2):
        raise SolverError(f"anderson mixing beta must be in (0, 2], got {beta!r}")
    shape = z0.shape
    tr = _Tracker(z0, tol, stop_mode, diverge_factor)
    hist = _History(m, functional=torch.is_grad_enabled())  # a: points x_i, b: residuals g_i (B, n, D)
    x = z0.flatten(1)  # (B, D)
    z = x
    fallbacks = 0
    for step in range(1, max_iter + 1):
        active = tr.active
        fx = f(x.view(shape)).flatten(1)
        abs_r, rel_r, new_div = tr.update(step, x, fx)
        z = torch.where(_mask(active & ~new_div, z), fx, z)
        running = tr.active
        hist.push(x, fx - x)
        if running.any():
            alpha, fell = _anderson_weights(hist.b, lam, hist.last)
            fallbacks += int((fell & running).sum())
            w = alpha[:, None, :]  # (B, 1, n)
            wg = (w @ hist.b)[:, 0]
            x_new = (w @ hist.a)[:, 0] + (wg if beta == 1.0 else beta * wg)
            x = torch.where(_mask(running, x), x_new, x)
        yield tr.step_out(step, z.view(shape), abs_r, rel_r, nfe=step, held=hist.nbytes, fallbacks=fallbacks)
        if not running.any():
            return


def _broyden(f: Fn, z0: torch.Tensor, tol: float, max_iter: int, stop_mode: str, m: int = 20,
             diverge_factor: float = 1e4) -> Iterator[SolverStep]:
    """Limited-memory "good" Broyden on g(x) = f(x) - x: x_{k+1} = x_k - H_k g_k, with the inverse
    Jacobian estimate H = -I + sum_i u_i v_i^T over the last m rank-one updates (oldest overwritten)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise SolverError(f"broyden memory m must be a positive integer, got {m!r}")
    shape = z0.shape
    tr = _Tracker(z0, tol, stop_mode, diverge_factor)
    uv = _History(m, functional=torch.is_grad_enabled())  # a: u (B, n, D), b: v (B, n, D)

    def hmul(y: torch.Tensor) -> torch.Tensor:  # H y = -y + sum_i u_i (v_i . y)
        if uv.a is None:
            return -y
        return -y + ((uv.b @ y[..., None]).transpose(1, 2) @ uv.a)[:, 0]

    def rmul(y: torch.Tensor) -> torch.Tensor:  # y^T H = -y + sum_i (y . u_i) v_i
        if uv.a is None:
            return -y
        return -y + ((uv.a @ y[..., None]).transpose(1, 2) @ uv.b)[:, 0]

    x = z0.flatten(1)
    z = x
    x_prev = g_prev = None
    fallbacks = 0
    for step in range(1, max_iter + 1):
        active = tr.active
        fx = f(x.view(shape)).flatten(1)
        g = fx - x
        abs_r, rel_r, new_div = tr.update(step, x, fx)
        z = torch.where(_mask(active & ~new_div, z), fx, z)
        running = tr.active
        if running.any():
            if x_prev is not None:
                dx, dg = x - x_prev, g - g_prev
                v = rmul(dx)
                den = (v * dg).sum(dim=1)
                floor = 1e-12 * v.norm(dim=1) * dg.norm(dim=1)
                ok = torch.isfinite(den) & (den.abs() > floor) & running
                u = (dx - hmul(dg)) / torch.where(ok, den, torch.ones_like(den))[:, None]
                ok = ok & torch.isfinite(u).all(dim=1) & torch.isfinite(v).all(dim=1)
                fallbacks += int((running & ~ok).sum())
                keep = _mask(ok, u)
                uv.push(torch.where(keep, u, torch.zeros_like(u)), torch.where(keep, v, torch.zeros_like(v)))
            x_prev, g_prev = x, g
            x = torch.where(_mask(running, x), x - hmul(g), x)
        yield tr.step_out(step, z.view(shape), abs_r, rel_r, nfe=step, held=uv.nbytes, fallbacks=fallbacks)
        if not running.any():
            return


class Counted:
    """f with a count of its calls (one call on the batch is one function evaluation): lets benchmarks and
    tests compare solvers, this project's or another library's, by the evaluations they really spend."""

    def __init__(self, f: Fn):
        self.f, self.calls = f, 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.f(z)


SOLVERS: Registry = Registry("solver", SolverError, entries={
    "fixed_point": _fixed_point,
    "anderson": _anderson,
    "broyden": _broyden,
})
_COMMON = ("f", "z0", "tol", "max_iter", "stop_mode")


def register_solver(name: str, fn: Callable[..., Iterator[SolverStep]]) -> None:
    SOLVERS.register(name, fn)


def get_solver(name: str) -> Callable[..., Iterator[SolverStep]]:
    return SOLVERS.lookup(name)


def solver_options(name: str) -> dict:
    """The options a solver accepts beyond the common ones, with their defaults."""
    params = inspect.signature(get_solver(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _COMMON}


def check_solver_args(method: str, tol: float, max_iter: int, stop_mode: str, options: dict | None = None) -> None:
    known = solver_options(method)
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise SolverError(f"unknown options {unknown} for solver {method!r}; accepted: {', '.join(known) or 'none'}")
    if stop_mode not in ("rel", "abs"):
        raise SolverError(f"stop_mode must be 'rel' or 'abs', got {stop_mode!r}")
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and 0 <= tol < 1e3):
        raise SolverError(f"tol must be a number in [0, 1000) (0: no convergence stop), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise SolverError(f"max_iter must be a positive integer, got {max_iter!r}")


def iterate(f: Fn, z0: torch.Tensor, method: str = "anderson", tol: float = 1e-4, max_iter: int = 100,
            stop_mode: str = "rel", **options) -> Iterator[SolverStep]:
    """Yield a SolverStep after every step until every sample has stopped or max_iter is reached."""
    check_solver_args(method, tol, max_iter, stop_mode, options)
    return get_solver(method)(f, z0, tol=tol, max_iter=max_iter, stop_mode=stop_mode, **options)


def solve(f: Fn, z0: torch.Tensor, method: str = "anderson", tol: float = 1e-4, max_iter: int = 100,
          stop_mode: str = "rel", **options) -> tuple[torch.Tensor, SolverStats]:
    """Run a solver to the end: (z, stats) with per-sample traces and stop steps."""
    rels, abss, last, held = [], [], None, 0
    for last in iterate(f, z0, method, tol, max_iter, stop_mode, **options):
        rels.append(last.rel)
        abss.append(last.abs)
        held = max(held, last.held_bytes)
    stop = last.stop_step.clone()
    stop[stop < 0] = last.step
    stats = SolverStats(rel_trace=torch.stack(rels, 1), abs_trace=torch.stack(abss, 1), nfe=last.nfe,
                        converged=last.converged, diverged=last.diverged, stop_step=stop, steps=last.step,
                        fallbacks=last.fallbacks, extra={"method": method, "held_bytes": held})
    return last.z, stats
