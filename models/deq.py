"""Deep equilibrium family: the model supplies f(z, x); a solver finds z* = f(z*, x).

Run settings are one frozen `DEQSettings` (forward solver, tolerance, the solver's own options, the backward
mode and its solver), validated when built and passed as an argument; the model's own `settings` are the
defaults its card recommends. Solver statistics come back through an `info` dict the caller owns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from . import implicit, precision, solvers
from .base import IterativeModel, IterState, LossFn, NoSettings, StopsAtTolerance, TrainStep, Widget, tensor_bytes
from .config import ConfigError, ModelConfig
from .cores import make_block
from .implicit import deq_forward, jacobian_penalty
from .registry import register_family

DAMPING_NAMES = ("tau", "beta", "damping")  # how solvers call their relaxation parameter
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _pairs(v: Any, what: str) -> tuple[tuple[str, Any], ...]:
    if isinstance(v, Mapping):
        v = tuple(v.items())
    if not isinstance(v, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in v):
        raise ConfigError(f"DEQ {what} must be a mapping of names to values, got {v!r}")
    return tuple(sorted(v))


def damping_param(method: str) -> str | None:
    """The name under which a solver takes its relaxation (tau for fixed_point, beta for anderson), or None."""
    try:
        opts = solvers.solver_options(method)
    except solvers.SolverError:
        return None
    return next((n for n in DAMPING_NAMES if n in opts), None)


@dataclass(frozen=True)
class DEQSettings(StopsAtTolerance, NoSettings):
    """How a DEQ runs: forward solver `method` with tolerance `tol` (0: run the whole budget) and its own
    `options` (anderson: m, lam, beta; fixed_point: tau; broyden: m), the training `backward` mode (implicit |
    jfb | unrolled or a registered one) and the implicit mode's own solver arguments `backward_solver`."""

    method: str = "anderson"
    tol: float = 1e-4
    options: tuple[tuple[str, Any], ...] = ()
    backward: str = "implicit"
    backward_solver: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _pairs(self.options, "solver options"))
        object.__setattr__(self, "backward_solver", _pairs(self.backward_solver, "backward solver"))
        known = solvers.solver_options(self.method)  # raises SolverError naming the known solvers
        unknown = sorted(set(dict(self.options)) - set(known))
        if unknown:
            raise solvers.SolverError(f"unknown options {unknown} for solver {self.method!r}; accepted: "
                                      f"{', '.join(known) or 'none'}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not 0 <= self.tol < 1:
            raise solvers.SolverError(f"tol must be a number in [0, 1) (0: run the whole budget), got {self.tol!r}")
        implicit.get_backward(self.backward)  # raises naming the known modes
        bad = sorted(set(dict(self.backward_solver)) - {"method", "tol", "max_iter", "stop_mode", *known})
        if bad:
            raise solvers.SolverError(f"unknown backward solver arguments {bad}")

    def updated(self, **changes: Any) -> DEQSettings:
        """A copy with changes; another `method` without new `options` drops the old method's options."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "method" in changes and changes["method"] != self.method and "options" not in changes:
            changes["options"] = ()
        return super().updated(**changes)

    def solver_args(self) -> dict:
        return {"method": self.method, "tol": float(self.tol), **dict(self.options)}


@register_family("deq")
class DEQModel(IterativeModel):
    """f(z, x) = block(z, encoder(x)). The stream yields the solver's iterates; training gets its
    gradient from `models.implicit` (the settings' backward mode: implicit / jfb / unrolled)."""

    label = "DEQ (fixed point by a solver, implicit gradient)"
    order = 30
    color = "#d62728"
    default_norm = True
    has_solver = True
    Settings = DEQSettings
    extra_series = ("solver_residual",)
    series_labels = {"solver_residual": "solver residual"}
    memory_modes = ("unrolled", "implicit", "jfb")
    # implicit and jfb often coincide: a dash and a marker tell them apart
    memory_mode_styles = {"unrolled": ("#d62728", "solid", "circle"), "implicit": ("#2ca02c", "dash", "square"),
                          "jfb": ("#1f77b4", "dot", "x")}
    memory_caption = ("Unrolled backprop records exactly that many solver steps; implicit and JFB solve up to that "
                      "many steps without a graph.")
    # its own training options (flags of `python -m ttc train`): the forward solver, its tolerance, the backward
    # mode, and the weight of the Jacobian penalty (Bai et al. 2021; 0: none)
    train_option_defaults = {"solver": "anderson", "tol": 1e-4, "grad": "implicit", "jac_reg": 0.0}
    train_option_ranges = {"tol": (0.0, 1.0, True), "jac_reg": (0.0, 1e6, False)}

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.block = make_block(cfg)
        self._init(seed)

    @classmethod
    def widgets(cls) -> tuple[Widget, ...]:
        return (
            Widget("solver", "DEQ solver", "select", "anderson", choices=tuple(solvers.SOLVERS), cli="--solver",
                   field="method", help="forward fixed-point solver"),
            Widget("tol", "Solver tolerance", "select", 1e-4, choices=TOLS, lo=0.0, hi=1.0, cli="--tol", field="tol",
                   help="relative residual at which a sample stops"),
            Widget("damping", "Damping", "number", 1.0, lo=0.05, hi=1.0,
                   help="relaxation of the solver step (1 = none); fixed_point's tau, anderson's beta"),
        )

    @classmethod
    def active_widgets(cls, values: dict[str, Any]) -> tuple[Widget, ...]:
        """Damping only for a solver that takes a relaxation parameter."""
        return tuple(w for w in cls.widgets() if w.key != "damping" or damping_param(values.get("solver", "")))

    @classmethod
    def settings_from_widgets(cls, values: dict[str, Any]) -> DEQSettings:
        method = values.get("solver", "anderson")
        opts = {}
        name, damping = damping_param(method), values.get("damping")
        if name and damping is not None and damping != 1.0:
            opts[name] = float(damping)
        return DEQSettings(method=method, tol=float(values.get("tol", 1e-4)), options=opts)

    @classmethod
    def widget_values(cls, settings: DEQSettings) -> dict[str, Any]:
        name = damping_param(settings.method)
        return {"solver": settings.method, "tol": settings.tol,
                "damping": float(dict(settings.options).get(name, 1.0)) if name else 1.0}

    @classmethod
    def settings_for_training(cls, options: dict[str, Any]) -> DEQSettings:
        """Its training options solver, tol and grad (backward mode)."""
        return DEQSettings(method=options.get("solver", "anderson"), tol=options.get("tol", 1e-4),
                           backward=options.get("grad", "implicit"))

    def settings_from_card(self, card: dict) -> DEQSettings:
        """The solver the card recommends ("solver": {"method", "tol"}), else the one it trained with; an unknown
        or malformed entry leaves the default (it is advice, not structure)."""
        rec = card.get("solver")
        if not isinstance(rec, dict):
            tc = card.get("train_config") if isinstance(card.get("train_config"), dict) else {}
            own = card.get("family_options") if isinstance(card.get("family_options"), dict) else {}
            rec = {"method": own.get("solver", tc.get("solver")), "tol": own.get("tol", tc.get("tol"))}
        out = DEQSettings()
        method, tol = rec.get("method"), rec.get("tol")
        if isinstance(method, str) and method in solvers.SOLVERS:
            out = out.updated(method=method)
        if isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0 < tol < 1:
            out = out.updated(tol=float(tol))
        return out

    def f(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.block(z, e)

    def fixed_point_map(self, x: torch.Tensor):
        e = self.encoder(x)
        return (lambda z_: self.f(z_, e)), torch.zeros_like(e)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, settings: DEQSettings | None = None) -> Iterator[IterState]:
        s = self.run_settings(settings)
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        f = precision.Refining(lambda z_: self.f(z_, e))  # bf16 until near the fixed point, then float32
        gen = solvers.iterate(f, z, max_iter=iters, **s.solver_args())
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
                                held_bytes=tensor_bytes(e) + last.held_bytes, series={"solver_residual": nan})

    def _state(self, s: solvers.SolverStep, e: torch.Tensor, readout: bool) -> IterState:
        logits = self.readout(s.z) if readout else None
        return IterState(k=s.step, z=s.z, logits=logits, nfe=s.nfe, residual=s.rel, converged=s.converged,
                         diverged=s.diverged, held_bytes=tensor_bytes(e) + s.held_bytes,
                         series={"solver_residual": s.rel})

    def equilibrium(self, x: torch.Tensor, iters: int | None = None, settings: DEQSettings | None = None,
                    info: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, object]:
        """(z*, e, f) with z*'s gradient from the settings' backward mode; `info` (the caller's dict) receives
        the solver statistics (info["forward"], and info["backward"] once backward has run)."""
        s = self.run_settings(settings)
        e = self.encoder(x)
        f = precision.Refining(lambda z_: self.f(z_, e))  # bf16 until near the fixed point, then float32
        z = deq_forward(f, torch.zeros_like(e), grad=s.backward, max_iter=iters or self.default_iters,
                        backward=dict(s.backward_solver), info=info, **s.solver_args())
        return z, e, f

    def forward(self, x: torch.Tensor, iters: int | None = None, settings: DEQSettings | None = None,
                info: dict | None = None) -> torch.Tensor:
        """Logits at the equilibrium, differentiable through the settings' backward mode."""
        z, _, _ = self.equilibrium(x, iters, settings, info)
        return self.readout(z)

    def memory_loss(self, x: torch.Tensor, loss_fn: LossFn, mode: str, iters: int, method: str | None = None,
                    tol: float | None = None, backward_solver: dict | None = None) -> tuple[torch.Tensor, dict]:
        """The loss at the equilibrium with backward mode `mode`; unrolled runs exactly `iters` steps (tol 0)."""
        settings = self.settings.updated(method=method, tol=tol, backward=mode, backward_solver=backward_solver)
        if mode == "unrolled":
            settings = settings.updated(tol=0.0)  # exactly `iters` steps on the graph
        info: dict = {}
        loss = loss_fn(self(x, iters, settings=settings, info=info))
        return loss, {"nfe": info["forward"].nfe, "method": info["forward"].extra.get("method")}

    def training_loss(self, x: torch.Tensor, loss_fn: LossFn, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss at the equilibrium (gradient by the backward mode), plus jac_reg x the Hutchinson estimate of
        ||J_f(z*)||_F^2 / D (Bai et al. 2021) when jac_reg > 0."""
        z, _, f = self.equilibrium(x, step.layers, step.settings)
        logits = self.readout(z)
        loss = loss_fn(logits)
        jac_reg = float(step.extras.get("jac_reg", 0.0))
        if jac_reg > 0:
            gen = step.generator or torch.Generator(device=z.device).manual_seed(0)
            loss = loss + jac_reg * jacobian_penalty(f, z, gen)
        return loss, logits
