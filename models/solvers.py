"""Fixed-point solvers for z* = f(z*), with per-sample stopping and accounting.

Every solver has one signature. `iterate(f, z0, method, ...)` yields a `SolverStep` after each step
(the stream the dashboard draws live); `solve(...)` runs it to the end and returns `(z, stats)`.
Solvers know nothing about models: they see only f, a function of z with shape (B, ...).

Per-sample semantics: a sample whose residual falls below tol is *converged* and frozen (it stops
changing) while the others go on; a sample whose residual turns NaN/inf or grows past
`diverge_factor` times its first residual is *diverged* and frozen at its last finite iterate.
Traces hold NaN after a sample's stop step: they are never padded with repeated values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

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
    fallbacks: int = 0  # singular least-squares steps that fell back (Anderson)


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

    def update(self, step: int, z_prev: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residuals of f(z_prev) - z_prev; marks stops. Returns (abs, rel, newly_stopped_or_stopped mask)."""
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
    """z <- (1 - tau) z + tau f(z) (tau = 1 is plain Picard iteration)."""
    if not 0 < tau <= 2:
        raise SolverError(f"fixed_point damping tau must be in (0, 2], got {tau}")
    tr = _Tracker(z0, tol, stop_mode, diverge_factor)
    z = z0
    for step in range(1, max_iter + 1):
        active = tr.active
        fz = f(z)
        abs_r, rel_r, new_div = tr.update(step, z, fz)
        z_new = (1 - tau) * z + tau * fz if tau != 1.0 else fz
        # converged-this-step samples take their final value; diverged ones keep their last finite iterate
        take = _mask(active & ~new_div, z)
        z = torch.where(take, z_new, z)
        yield tr.step_out(step, z, abs_r, rel_r, nfe=step)
        if not tr.active.any():
            return


SOLVERS: dict[str, Callable[..., Iterator[SolverStep]]] = {"fixed_point": _fixed_point}


def register_solver(name: str, fn: Callable[..., Iterator[SolverStep]]) -> None:
    SOLVERS[name] = fn


def get_solver(name: str) -> Callable[..., Iterator[SolverStep]]:
    try:
        return SOLVERS[name]
    except KeyError:
        raise SolverError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}") from None


def check_solver_args(method: str, tol: float, max_iter: int, stop_mode: str) -> None:
    get_solver(method)
    if stop_mode not in ("rel", "abs"):
        raise SolverError(f"stop_mode must be 'rel' or 'abs', got {stop_mode!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1e3):
        raise SolverError(f"tol must be a number in (0, 1000), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise SolverError(f"max_iter must be a positive integer, got {max_iter!r}")


def iterate(f: Fn, z0: torch.Tensor, method: str = "anderson", tol: float = 1e-4, max_iter: int = 100,
            stop_mode: str = "rel", **options) -> Iterator[SolverStep]:
    """Yield a SolverStep after every step until every sample has stopped or max_iter is reached."""
    check_solver_args(method, tol, max_iter, stop_mode)
    return get_solver(method)(f, z0, tol=tol, max_iter=max_iter, stop_mode=stop_mode, **options)


def solve(f: Fn, z0: torch.Tensor, method: str = "anderson", tol: float = 1e-4, max_iter: int = 100,
          stop_mode: str = "rel", **options) -> tuple[torch.Tensor, SolverStats]:
    """Run a solver to the end: (z, stats) with per-sample traces and stop steps."""
    rels, abss, last = [], [], None
    for last in iterate(f, z0, method, tol, max_iter, stop_mode, **options):
        rels.append(last.rel)
        abss.append(last.abs)
    stop = last.stop_step.clone()
    stop[stop < 0] = last.step
    stats = SolverStats(rel_trace=torch.stack(rels, 1), abs_trace=torch.stack(abss, 1), nfe=last.nfe,
                        converged=last.converged, diverged=last.diverged, stop_step=stop, steps=last.step,
                        fallbacks=last.fallbacks)
    return last.z, stats
