"""Backward modes for DEQs: how the gradient reaches the parameters from the equilibrium z*.

Every mode solves z* = f(z*) forward with a solver from `models.solvers`; they differ in the graph
they leave for backward. f closes over the parameters and the injected input; nothing here imports
model code.

- `implicit`: the implicit function theorem. Forward solves without a graph, then applies f once
  differentiably at z*. Backward replaces the incoming gradient v with the solution g of the linear
  fixed point g = g J_f(z*) + v, solved with a solver of its own (own method/tol/max_iter), so
  dL/dtheta = g df/dtheta. Memory does not grow with the number of forward iterations.
- `jfb`: Jacobian-free backprop (Fung et al. 2022): the same single application of f, with the
  incoming gradient passed through unchanged (g = v, the zeroth term of the Neumann series).
- `unrolled`: backprop through every forward iteration of the solver (the baseline whose memory
  grows linearly with the iterations).

`jacobian_penalty` is the Hutchinson estimate of ||J_f(z*)||_F^2 used for Jacobian regularisation
(Bai et al. 2021), a training loss term that keeps the fixed point easy to find.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import solvers
from .registry import Registry

Fn = Callable[[torch.Tensor], torch.Tensor]


def _solve_no_graph(f: Fn, z0: torch.Tensor, info: dict | None, **solver_args) -> torch.Tensor:
    with torch.no_grad():
        z, stats = solvers.solve(f, z0, **solver_args)
    if info is not None:
        info["forward"] = stats
    return z.detach()


def _implicit(f: Fn, z0: torch.Tensor, solver_args: dict, backward: dict, info: dict | None) -> torch.Tensor:
    z_star = _solve_no_graph(f, z0, info, **solver_args)
    z_in = z_star.requires_grad_()
    z = f(z_in)  # one differentiable application at the equilibrium: the only graph kept
    if not z.requires_grad:
        return z

    def hook(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:  # an undefined incoming gradient stands for zeros; so does the solution
            return None
        # g = g J + v, with g J a vector-Jacobian product through the same graph (retained for the
        # repeated products). It starts at z, below the hooked view, so it does not re-enter this hook.
        def lin(g: torch.Tensor) -> torch.Tensor:
            return torch.autograd.grad(z, z_in, g, retain_graph=True)[0] + v

        with torch.no_grad():
            g, stats = solvers.solve(lin, v, **backward)
        if info is not None:
            info["backward"] = stats
        return g

    out = z.view_as(z)
    out.register_hook(hook)
    return out


def _jfb(f: Fn, z0: torch.Tensor, solver_args: dict, backward: dict, info: dict | None) -> torch.Tensor:
    z_star = _solve_no_graph(f, z0, info, **solver_args)
    return f(z_star)


def _unrolled(f: Fn, z0: torch.Tensor, solver_args: dict, backward: dict, info: dict | None) -> torch.Tensor:
    z, stats = solvers.solve(f, z0, **solver_args)  # autograd records every step the solver takes
    if info is not None:
        info["forward"] = stats
    return z


BACKWARD_MODES: Registry = Registry("backward mode", solvers.SolverError, "modes",
                                    entries={"implicit": _implicit, "jfb": _jfb, "unrolled": _unrolled})


def get_backward(name: str) -> Callable[..., torch.Tensor]:
    return BACKWARD_MODES.lookup(name)


def register_backward(name: str, fn: Callable[..., torch.Tensor]) -> None:
    BACKWARD_MODES.register(name, fn)


def deq_forward(f: Fn, z0: torch.Tensor, grad: str = "implicit", method: str = "anderson", tol: float = 1e-4,
                max_iter: int = 30, backward: dict | None = None, info: dict | None = None,
                **options) -> torch.Tensor:
    """z* = f(z*) from z0 (B, ...), with the gradient of backward mode `grad` attached.

    method/tol/max_iter/options go to the forward solver. `backward` holds the implicit mode's own
    solver arguments (method, tol, max_iter, stop_mode, options); each defaults to the forward's.
    `info`, if given, receives the SolverStats as info["forward"] and, once backward has run,
    info["backward"]. Without grad mode every backward mode returns the solver's z* unchanged;
    implicit and jfb return f(z*) (one more function evaluation than the forward solve reports).
    """
    mode = get_backward(grad)
    solver_args = {"method": method, "tol": tol, "max_iter": max_iter, **options}
    solvers.check_solver_args(method, tol, max_iter, options.get("stop_mode", "rel"),
                              {k: v for k, v in options.items() if k != "stop_mode"})
    bwd = dict(backward or {})
    b_args = {"method": bwd.pop("method", method), "tol": bwd.pop("tol", tol),
              "max_iter": bwd.pop("max_iter", max_iter), "stop_mode": bwd.pop("stop_mode", "rel")}
    if b_args["method"] == method:
        bwd = {**{k: v for k, v in options.items() if k != "stop_mode"}, **bwd}
    solvers.check_solver_args(b_args["method"], b_args["tol"], b_args["max_iter"], b_args["stop_mode"], bwd)
    b_args.update(bwd)
    if not torch.is_grad_enabled():
        return _solve_no_graph(f, z0, info, **solver_args)
    return mode(f, z0, solver_args, b_args, info)


def jacobian_penalty(f: Fn, z: torch.Tensor, generator: torch.Generator, probes: int = 1) -> torch.Tensor:
    """Hutchinson estimate of ||J_f(z)||_F^2 / D, averaged over the batch (a scalar with a graph).

    For v ~ N(0, I), E ||v^T J||^2 = ||J||_F^2; dividing by D, the per-sample size of z, makes the
    weight independent of the problem size (as in Bai et al. 2021). `probes` vectors per sample.
    """
    z_in = z.detach().requires_grad_()
    fz = f(z_in)
    total = fz.new_zeros(())
    for _ in range(probes):
        v = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        (vj,) = torch.autograd.grad(fz, z_in, v, create_graph=True, retain_graph=True)
        total = total + vj.flatten(1).pow(2).sum(dim=1).mean()
    return total / (probes * z[0].numel())
