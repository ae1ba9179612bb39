"""Deep equilibrium family: the model supplies f(z, x); a solver finds z* = f(z*, x)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from . import solvers
from .base import IterativeModel, IterState, tensor_bytes
from .config import ModelConfig
from .cores import make_block


class DEQModel(IterativeModel):
    """f(z, x) = block(z, encoder(x)). The stream yields the solver's iterates; training gets its
    gradient from `models.implicit` (implicit / jfb / unrolled), chosen by `self.grad`."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.block = make_block(cfg)
        self._init(seed)
        # solver defaults for evaluation and training; callers may override per call
        self.solver = {"method": "fixed_point", "tol": 1e-4}
        self.grad = "jfb"

    def f(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.block(z, e)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, **options) -> Iterator[IterState]:
        opts = {**self.solver, **options}
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        gen = solvers.iterate(lambda z_: self.f(z_, e), z, max_iter=iters, **opts)
        last = None
        for last in gen:
            yield self._state(last, e, readout)
        # all samples stopped before the budget: the iterate no longer changes, keep streaming it
        # so the trace covers the whole budget without spending function evaluations
        if last is not None and last.step < iters:
            logits = self.readout(last.z) if readout else None
            for k in range(last.step + 1, iters + 1):
                nan = torch.full_like(last.rel, float("nan"))
                yield IterState(k=k, z=last.z, logits=logits, nfe=last.nfe, residual=nan,
                                converged=last.converged, diverged=last.diverged,
                                held_bytes=tensor_bytes(e) + last.held_bytes)

    def _state(self, s: solvers.SolverStep, e: torch.Tensor, readout: bool) -> IterState:
        logits = self.readout(s.z) if readout else None
        return IterState(k=s.step, z=s.z, logits=logits, nfe=s.nfe, residual=s.rel, converged=s.converged,
                         diverged=s.diverged, held_bytes=tensor_bytes(e) + s.held_bytes)

    def forward(self, x: torch.Tensor, iters: int | None = None, **options) -> torch.Tensor:
        """Logits at the equilibrium, differentiable through the configured backward mode."""
        from .implicit import deq_forward  # the backward modes live beside the solvers

        e = self.encoder(x)
        opts = {**self.solver, **options}
        z = deq_forward(lambda z_: self.f(z_, e), torch.zeros_like(e), grad=self.grad,
                        max_iter=iters or self.default_iters, **opts)
        return self.readout(z)
