"""Backward modes for DEQs: how the gradient reaches the parameters from the equilibrium z*.

- `jfb`: Jacobian-free backprop; solve without graph, then one differentiable application of f.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import solvers

BACKWARD_MODES = ("jfb",)


def deq_forward(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, grad: str = "jfb",
                method: str = "fixed_point", tol: float = 1e-4, max_iter: int = 30, **options) -> torch.Tensor:
    """z* with the gradient of the chosen backward mode attached."""
    if grad not in BACKWARD_MODES:
        raise solvers.SolverError(f"unknown backward mode {grad!r}; known modes: {', '.join(BACKWARD_MODES)}")
    with torch.no_grad():
        z, _ = solvers.solve(f, z0, method=method, tol=tol, max_iter=max_iter, **options)
    return f(z.detach()) if torch.is_grad_enabled() else z
