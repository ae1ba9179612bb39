"""Deep equilibrium family: the model supplies f(z, x); a solver finds z* = f(z*, x).

Attributes a caller may set (training does): `solver` (forward solver arguments: method, tol and the
method's options), `grad` (backward mode: implicit | jfb | unrolled), `backward` (the implicit
mode's own solver arguments), `jac_reg` (when true, a forward with grad also leaves the Hutchinson
estimate of ||J_f(z*)||_F^2 / D in `last_jac_loss`, for the training loss). `last_info` holds the
last forward's solver statistics (and the backward's, once backward has run).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from . import solvers
from .base import IterativeModel, IterState, tensor_bytes
from .config import ModelConfig
from .cores import make_block
from .implicit import deq_forward, jacobian_penalty


class DEQModel(IterativeModel):
    """f(z, x) = block(z, encoder(x)). The stream yields the solver's iterates; training gets its
    gradient from `models.implicit` (implicit / jfb / unrolled), chosen by `self.grad`."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.block = make_block(cfg)
        self._init(seed)
        # solver defaults for evaluation and training; callers may override per call
        self.solver = {"method": "anderson", "tol": 1e-4}
        self.grad = "implicit"
        self.backward: dict = {}
        self.jac_reg = False
        self.last_jac_loss: torch.Tensor | None = None
        self.last_info: dict = {}
        self._seed = seed
        self._jac_gen: torch.Generator | None = None

    def f(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.block(z, e)

    def solver_args(self, options: dict) -> dict:
        """self.solver overridden by per-call options; another method drops the configured method's options."""
        base = dict(self.solver)
        if options.get("method", base.get("method")) != base.get("method"):
            base = {k: v for k, v in base.items() if k in ("tol", "stop_mode")}
        return {**base, **options}

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, **options) -> Iterator[IterState]:
        opts = self.solver_args(options)
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
        e = self.encoder(x)
        f = lambda z_: self.f(z_, e)
        self.last_info = {}
        z = deq_forward(f, torch.zeros_like(e), grad=self.grad, max_iter=iters or self.default_iters,
                        backward=self.backward, info=self.last_info, **self.solver_args(options))
        self.last_jac_loss = None
        if self.jac_reg and torch.is_grad_enabled():
            self.last_jac_loss = jacobian_penalty(f, z, self._generator(z.device))
        return self.readout(z)

    def _generator(self, device: torch.device) -> torch.Generator:
        """The Hutchinson probes' generator, seeded from the model seed (one per device, advancing)."""
        if self._jac_gen is None or self._jac_gen.device != device:
            self._jac_gen = torch.Generator(device=device).manual_seed(self._seed + 1)
        return self._jac_gen
