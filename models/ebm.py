"""Energy-based family: inference is gradient descent on a learned energy E_theta(x, y).

The answer is a relaxed assignment y in [0, 1] per output cell (one value per cell for two-class tasks, one per
class otherwise; the prediction is y > 1/2, or the argmax). The energy is a scalar per problem,

    E(x, y) = sum over positions of  head( block( embed(2y - 1), encoder(x) ) )

with one of the shared cores as `block` (smooth activations, since inference differentiates it), so a larger
problem simply has more terms. Inference descends it. The answer must stay in [0, 1]; rather than clip (a clip
stops the gradient of every saturated cell, so training could not correct a cell that saturated wrongly), descent
runs in the answer's logits u, y = sigmoid(u) (softmax over the class channel for more classes): mirror descent
with the entropic mirror map, i.e. gradient descent on E in the geometry that keeps y inside the box:

    v_k = momentum * v_{k-1} - step * grad_y E(x, y_{k-1})  (+ noise * sqrt(step) * N(0, 1), seeded)
    u_k = u_{k-1} + v_k,   y_k = sigmoid(u_k)

Every iteration is one `IterState`: z = y_k (the relaxed answer), logits (0, u_k) so the prediction is y_k > 1/2,
the per-sample energy E(x, y_k) and ||grad_y E|| as series, y_k as the map the inspector shows, and the residual
||y_k - y_{k-1}|| / sqrt(cells) (the RMS change per cell, comparable across sizes). NFE counts energy-and-
gradient evaluations: the start's, then one per iteration. A sample whose residual falls below `tol` stops (its y is
frozen and costs nothing more, as a solver's converged samples do); a sample whose energy, state or gradient turns
NaN/inf is marked diverged and frozen at its last finite state, never an exception.

Training (`training_loss`; the recipe of the energy-minimisation literature: IREM, Du et al. 2022; IRED, Du et al.
2024; Energy-Based Transformers, Gladstone et al. 2025): descend n steps without a graph from the start (n drawn
as the progressive loss draws it, so the model learns to continue from wherever descent has got to), then k steps
with `create_graph` so the loss reaches theta through the descent itself, and

    loss = cross-entropy of the final y (half) and of every graded iterate (the other half)
         + contrast * mean over negatives of relu(E(x, y*) - E(x, y-) + margin * |y* - y-|_1) / cells
         + stationary * mean over cells of relu(inward component of grad_y E(x, y*))^2

The contrastive term shapes the landscape so the true answer y* sits lower than what descent visits (the iterate
after the first n steps) and than a corrupted answer (a random tenth of its cells flipped; with more classes, given
another class), by a margin that grows with how wrong they are; the stationarity term makes y* a fixed point of
projected descent (its gradient points out of the box, or is zero), so descending longer keeps the answer instead of
over-descending.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from .base import IterativeModel, IterState, LossFn, NoSettings, StopsAtTolerance, TrainStep, Widget, tensor_bytes
from .config import ConfigError, ModelConfig
from .cores import _conv, make_block, spatial
from .registry import register_family

INITS = ("half", "uniform")
TOLS = (0.0, 1e-2, 1e-3, 1e-4, 1e-5)


@dataclass(frozen=True)
class EBMSettings(StopsAtTolerance, NoSettings):
    """How an energy-based model descends: `step` (eta), heavy-ball `momentum`, Langevin-style `noise` (std per
    unit step, from `seed`), the stop tolerance `tol` on the RMS change per cell (0: run the whole budget) and the
    initial answer `init` ("half": 1/2 everywhere; "uniform": uniform in [0, 1] from `seed`)."""

    step: float = 1.0
    momentum: float = 0.0
    noise: float = 0.0
    tol: float = 1e-4
    init: str = "half"
    seed: int = 0

    def __post_init__(self) -> None:
        def num(name: str, lo: float, hi: float, lo_open: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
            if not ok or (lo_open and v <= lo):
                rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
                raise ConfigError(f"EBM {name} must be a number in {rng}, got {v!r}")
        num("step", 0.0, 100.0, lo_open=True)
        num("momentum", 0.0, 0.99)
        num("noise", 0.0, 10.0)
        num("tol", 0.0, 0.5)
        if self.init not in INITS:
            raise ConfigError(f"EBM init must be one of {', '.join(INITS)}, got {self.init!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"EBM seed must be a non-negative integer, got {self.seed!r}")


def _noiseless(s: EBMSettings) -> EBMSettings:
    """The settings without noise: training and memory measurements descend deterministically."""
    return s.updated(noise=0.0) if s.noise else s


@dataclass
class Descent:
    """One point of a descent: its coordinates u, the answer y, its per-sample energy, the gradient there and the
    momentum."""

    u: torch.Tensor  # (B, Y, *spatial) the descent's coordinates (logits of y)
    y: torch.Tensor  # (B, Y, *spatial) in (0, 1)
    energy: torch.Tensor  # (B,)
    grad: torch.Tensor  # (B, Y, *spatial)
    v: torch.Tensor  # (B, Y, *spatial) heavy-ball velocity


@register_family("ebm")
class EBMModel(IterativeModel):
    """E(x, y) from a smooth core over (encoder(x), embed(y)); the stream is (mirror) gradient descent on y.
    `config.layers` is the descent-step count it trained at; any budget can be asked for."""

    label = "energy-based (gradient descent on a learned energy)"
    order = 33
    color = "#2ca02c"
    needs_grad = True
    Settings = EBMSettings
    extra_series = ("energy", "grad_norm")
    breadth_series = "energy"
    extra_maps = ("answer",)  # y itself (B, Y, *spatial) per iteration: the inspector shows it forming
    series_labels = {"energy": "energy E(x, y)", "grad_norm": "||grad_y E||"}
    map_views = (("answer_frames", ("answer",), "The relaxed answer y"),)
    # its own training options (train flags; TrainStep.extras in its loss): descent step, contrastive weight and
    # margin, stationarity weight, corrupted cells' and uniform starts' fractions (docs/families.md)
    train_option_defaults = {"step_size": 1.0, "contrast": 0.1, "margin": 1.0, "stationary": 1.0, "corrupt": 0.1,
                             "uniform_start": 0.25}
    train_option_ranges = {"step_size": (0.0, 100.0, True), "contrast": (0.0, 1e3, False), "margin": (0.0, 1e3, False),
                           "stationary": (0.0, 1e3, False), "corrupt": (0.0, 1.0, False),
                           "uniform_start": (0.0, 1.0, False)}

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        dims, k = spatial(cfg)
        self.answer_channels = 1 if cfg.classes == 2 else cfg.classes
        self.readout = None  # the answer is y itself: no readout head
        self.embed = _conv(dims, self.answer_channels, cfg.width, k, cfg.bias)
        self.block = make_block(cfg, smooth=True)
        self.head = _conv(dims, cfg.width, 1, 1, cfg.bias)
        self._init(seed)

    @classmethod
    def widgets(cls) -> tuple[Widget, ...]:
        return (
            Widget("step", "Descent step size", "number", 1.0, lo=0.01, hi=10.0, field="step",
                   help="eta in logit(y) <- logit(y) - eta grad_y E"),
            Widget("momentum", "Momentum", "select", 0.0, choices=(0.0, 0.5, 0.9), lo=0.0, hi=0.99,
                   field="momentum", help="heavy-ball momentum of the descent"),
            Widget("noise", "Noise", "select", 0.0, choices=(0.0, 0.01, 0.05, 0.1), lo=0.0, hi=10.0,
                   field="noise", help="Langevin-style noise per step (seeded)"),
            Widget("tol", "Stop tolerance", "select", 1e-4, choices=TOLS, lo=0.0, hi=0.5, cli="--tol", field="tol",
                   help="RMS change of y per cell at which a sample stops (0: run the whole budget)"),
        )

    @classmethod
    def settings_for_training(cls, options: dict[str, Any]) -> EBMSettings:
        """Descent with its training option step_size, no noise; training runs its drawn step counts (no tol stop)."""
        return EBMSettings(step=float(options.get("step_size", 1.0)), tol=0.0)

    def settings_from_card(self, card: dict) -> EBMSettings:
        """The descent the card recommends ("descent": {step, momentum, tol}), else the step it trained with;
        malformed entries are ignored (advice, not structure)."""
        rec = card.get("descent")
        if not isinstance(rec, dict):
            tc = card.get("train_config") if isinstance(card.get("train_config"), dict) else {}
            own = card.get("family_options") if isinstance(card.get("family_options"), dict) else {}
            rec = {"step": own.get("step_size", tc.get("step_size"))}  # cards before the option moved: train_config
        out = EBMSettings()
        if isinstance(rec, dict):
            for name in ("step", "momentum", "tol"):
                try:
                    out = out.updated(**{name: rec.get(name)})
                except ConfigError:
                    pass
        return out

    # -- the energy ---------------------------------------------------------------------------------------------
    def energy(self, e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) E(x, y) given the encoded input e = encoder(x) (B, W, *spatial) and y (B, Y, *spatial)."""
        h = self.block(self.embed(2 * y - 1), e)
        return self.head(h).flatten(1).sum(1)

    def energy_and_grad(self, e: torch.Tensor, y: torch.Tensor, create_graph: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E (B,), grad_y E (B, Y, *spatial)). create_graph keeps the gradient differentiable (training)."""
        # descent needs autograd even when the caller runs in inference mode (a bare loop, a benchmark): the
        # gradient is taken outside it, on ordinary copies of any inference tensors
        with torch.inference_mode(False), torch.enable_grad():
            if e.is_inference():
                e = e.clone()
            if y.is_inference():
                y = y.clone()
            if not create_graph:
                y = y.detach()
            if not y.requires_grad:
                y = y.requires_grad_(True)
            energy = self.energy(e, y)
            (grad,) = torch.autograd.grad(energy.sum(), y, create_graph=create_graph)
        return (energy, grad) if create_graph else (energy.detach(), grad.detach())

    def answer(self, targets: torch.Tensor) -> torch.Tensor:
        """The task's targets (B, *spatial) as the relaxed answer y* (B, Y, *spatial)."""
        if self.answer_channels == 1:
            return targets.unsqueeze(1).float()
        return F.one_hot(targets.long(), self.config.classes).movedim(-1, 1).float()

    def to_answer(self, u: torch.Tensor) -> torch.Tensor:
        """y from the descent's coordinates u: sigmoid (two classes) or softmax over the class channel."""
        return torch.sigmoid(u) if self.answer_channels == 1 else torch.softmax(u, dim=1)

    def to_coords(self, y: torch.Tensor) -> torch.Tensor:
        """u from y (the inverse of to_answer; y is clipped to [1e-4, 1 - 1e-4] first)."""
        y = y.clamp(1e-4, 1 - 1e-4)
        return torch.logit(y) if self.answer_channels == 1 else torch.log(y)

    def logits_of(self, u: torch.Tensor) -> torch.Tensor:
        """(B, classes, *spatial) logits whose softmax is y: (0, u) for two classes, u itself otherwise."""
        return torch.cat([torch.zeros_like(u), u], dim=1) if self.answer_channels == 1 else u

    def initial_coords(self, e: torch.Tensor, z0: torch.Tensor | None, s: EBMSettings,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """u_0: from a given initial answer z0 (B, Y, *spatial), else y = 1/2 ("half") or uniform ("uniform")."""
        shape = (e.shape[0], self.answer_channels, *e.shape[2:])
        if z0 is not None:
            if tuple(z0.shape) != shape:
                raise ValueError(f"an EBM's initial state is an answer y of shape {shape}, got {tuple(z0.shape)}")
            return self.to_coords(z0.to(e.dtype).nan_to_num(0.5))
        if s.init == "uniform":
            gen = generator or torch.Generator(device=e.device).manual_seed(s.seed)
            return self.to_coords(torch.rand(shape, generator=gen, device=e.device, dtype=e.dtype))
        return self.to_coords(torch.full(shape, 0.5, device=e.device, dtype=e.dtype))

    def _eval(self, e: torch.Tensor, u: torch.Tensor, v: torch.Tensor, create_graph: bool) -> Descent:
        y = self.to_answer(u)
        energy, grad = self.energy_and_grad(e, y, create_graph)
        return Descent(u, y, energy, grad, v)

    def _step(self, e: torch.Tensor, d: Descent, s: EBMSettings, gen: torch.Generator | None,
              create_graph: bool = False) -> Descent:
        """One mirror-descent step: u <- u + v, v = momentum v - step grad_y E (+ noise), y = sigmoid(u)."""
        v = s.momentum * d.v - s.step * d.grad if s.momentum else -s.step * d.grad
        u = d.u + v
        if s.noise:
            u = u + s.noise * math.sqrt(s.step) * torch.randn(u.shape, generator=gen, device=u.device, dtype=u.dtype)
        return self._eval(e, u, v, create_graph)

    def _start(self, e: torch.Tensor, u0: torch.Tensor, create_graph: bool = False) -> Descent:
        return self._eval(e, u0, torch.zeros_like(u0), create_graph)

    def perturbed_start(self, final: torch.Tensor, scale: float, rms: float, generator: torch.Generator
                        ) -> torch.Tensor:
        """A random initial answer: y = clip(1/2 + scale (U - 1/2), 0, 1) with U uniform per cell (scale 1:
        uniform in [0, 1]; larger scales push cells to 0 or 1)."""
        u = torch.rand(final.shape, generator=generator)
        return (0.5 + scale * (u - 0.5)).clamp(0, 1)

    @property
    def reach_per_iteration(self) -> int | None:
        """A descent step follows the energy's gradient: y at one cell changes the block's output up to its reach
        away, and the gradient at a cell gathers those outputs from up to its reach away: twice the block's."""
        r = getattr(self.block, "reach", None)
        return None if r is None else 2 * r

    @property
    def state_channels(self) -> int:
        return self.answer_channels

    def forward(self, x: torch.Tensor, iters: int | None = None, settings: EBMSettings | None = None) -> torch.Tensor:
        """The logits after `iters` descent steps from the settings' start. With autograd on, differentiable in the
        weights through every step (create_graph; no tol stop); otherwise the stream's last logits."""
        iters = self.checked_iters(iters)
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return super().forward(x, iters, settings)
        s = _noiseless(self.run_settings(settings))
        e = self.encoder(x)
        _, points = self._descend(e, self.initial_coords(e, None, s), s, 0, iters)
        return self.logits_of(points[-1].u)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, settings: EBMSettings | None = None) -> Iterator[IterState]:
        s = self.run_settings(settings)
        with torch.no_grad():
            e = self.encoder(x)
        gen = torch.Generator(device=e.device).manual_seed(s.seed + 1) if s.noise else None
        d = self._start(e, self.initial_coords(e, z0, s))
        B = e.shape[0]
        cells = d.y[0].numel()
        stopped = torch.zeros(B, dtype=torch.bool, device=e.device)
        conv = torch.zeros_like(stopped)
        div = ~torch.isfinite(d.energy) | ~torch.isfinite(d.grad.flatten(1)).all(1)
        nan = torch.full((B,), float("nan"), device=e.device)
        nfe = 1  # the start's energy and gradient
        for k in range(1, iters + 1):
            stopped = conv | div
            if bool(stopped.all()):  # every sample stopped: the state holds, no evaluations are spent
                nxt = d
                res = nan
            else:
                nxt = self._step(e, d, s, gen)
                nfe += 1
                bad = ~torch.isfinite(nxt.energy) | ~torch.isfinite(nxt.u.flatten(1)).all(1) | \
                    ~torch.isfinite(nxt.grad.flatten(1)).all(1)
                keep = (stopped | bad).view(B, *([1] * (d.y.dim() - 1)))
                if bool(keep.any()):  # stopped and newly diverged samples keep their last (finite) state
                    nxt = Descent(*(torch.where(keep, a, b) for a, b in ((d.u, nxt.u), (d.y, nxt.y))),
                                  torch.where(stopped | bad, d.energy, nxt.energy),
                                  *(torch.where(keep, a, b) for a, b in ((d.grad, nxt.grad), (d.v, nxt.v))))
                res = (nxt.y - d.y).flatten(1).norm(dim=1) / math.sqrt(cells)
                res = torch.where(stopped | bad, nan, res)
                div = div | bad
                conv = conv | (~div & (res < s.tol))
            d = nxt
            gnorm = torch.where(stopped, nan, d.grad.flatten(1).norm(dim=1))
            yield IterState(k=k, z=d.y, logits=self.logits_of(d.u), nfe=nfe, residual=res,
                            converged=conv.clone(), diverged=div.clone(), held_bytes=tensor_bytes(e, d.grad, d.v),
                            series={"energy": d.energy, "grad_norm": gnorm}, maps={"answer": d.y})

    # -- training -----------------------------------------------------------------------------------------------
    def training_loss(self, x: torch.Tensor, loss_fn: LossFn, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        s = _noiseless(step.settings if isinstance(step.settings, EBMSettings) else self.settings)
        opts = {**self.TRAIN_DEFAULTS, **{k: step.extras[k] for k in self.TRAIN_DEFAULTS if k in step.extras}}
        gen = step.generator
        e = self.encoder(x)
        u0 = self.initial_coords(e, None, s)
        if opts["uniform_start"] > 0 and gen is not None:  # some problems start from a random answer (breadth)
            pick = torch.rand(u0.shape[0], generator=gen, device=u0.device) < opts["uniform_start"]
            noise = self.initial_coords(e, None, s.updated(init="uniform"), generator=gen)
            u0 = torch.where(pick.view(-1, *([1] * (u0.dim() - 1))), noise, u0)
        visited, graded = self._descend(e, u0, s, step.n, max(1, step.k))
        losses = [loss_fn(self.logits_of(d.u)) for d in graded]
        final = losses[-1]
        loss = 0.5 * final + 0.5 * torch.stack(losses).mean()
        targets = step.extras.get("targets")
        if targets is not None:
            loss = loss + self.landscape_loss(e, targets, visited, opts, gen)
        return loss, self.logits_of(graded[-1].u)

    def _descend(self, e: torch.Tensor, u0: torch.Tensor, s: EBMSettings, free: int, graded: int
                 ) -> tuple[torch.Tensor, list[Descent]]:
        """`free` descent steps without a graph, then `graded` with one (create_graph): (the answer after the
        free steps, detached; the graded points)."""
        u = u0.detach()
        if free:
            d = self._start(e.detach(), u)
            for _ in range(free):
                d = self._step(e.detach(), d, s, None)
            u = d.u.detach()
        visited = self.to_answer(u)
        d = self._start(e, u, create_graph=True)
        out = []
        for _ in range(graded):
            d = self._step(e, d, s, None, create_graph=True)
            out.append(d)
        return visited, out

    memory_modes = ("unrolled", "last")
    memory_mode_styles = {"unrolled": ("#d62728", "solid", "circle"), "last": ("#2ca02c", "dash", "diamond")}
    memory_caption = ("Unrolled trains through every descent step (each a differentiable gradient of the energy, so "
                      "double backprop); last runs all but the last step without a graph.")

    def memory_loss(self, x: torch.Tensor, loss_fn: LossFn, mode: str, iters: int,
                    **options: Any) -> tuple[torch.Tensor, dict]:
        """The loss after `iters` descent steps from y = 1/2: `unrolled` differentiates through all of them (the
        memory of training through T steps grows with T), `last` through the last one only (constant memory,
        the EBM's analogue of Jacobian-free backprop)."""
        if options:
            raise ValueError(f"an EBM's memory step takes no solver options, got {sorted(options)}")
        s = _noiseless(self.settings)
        e = self.encoder(x)
        u0 = self.initial_coords(e, None, EBMSettings())
        free, graded = (0, iters) if mode == "unrolled" else (iters - 1, 1)
        _, points = self._descend(e, u0, s, free, graded)
        return loss_fn(self.logits_of(points[-1].u)), {"nfe": iters + 1 + (mode != "unrolled"), "method": "descent"}

    TRAIN_DEFAULTS: dict[str, float] = {k: v for k, v in train_option_defaults.items() if k != "step_size"}

    def landscape_loss(self, e: torch.Tensor, targets: torch.Tensor, visited: torch.Tensor, opts: dict,
                       gen: torch.Generator | None) -> torch.Tensor:
        """The contrastive and stationarity terms (see the module docstring)."""
        y_true = self.answer(targets)
        cells = y_true[0].numel()
        if self.answer_channels == 1:
            flip = torch.rand(y_true.shape, generator=gen, device=y_true.device) < opts["corrupt"]
            corrupted = torch.where(flip, 1 - y_true, y_true)
        else:  # more classes: a corrupted cell gets another class, drawn uniformly, so the answer stays one-hot
            cell_shape = (y_true.shape[0], 1, *y_true.shape[2:])
            flip = torch.rand(cell_shape, generator=gen, device=y_true.device) < opts["corrupt"]
            shift = torch.randint(1, self.config.classes, cell_shape, generator=gen, device=y_true.device)
            other = F.one_hot((targets.unsqueeze(1).long() + shift) % self.config.classes,
                              self.config.classes).squeeze(1).movedim(-1, 1).to(y_true.dtype)
            corrupted = torch.where(flip, other, y_true)
        negs = torch.cat([visited, corrupted])
        e2 = torch.cat([e, e])
        with torch.enable_grad():
            yt = y_true.clone().requires_grad_(True)
            e_true = self.energy(e, yt)
            (g_true,) = torch.autograd.grad(e_true.sum(), yt, create_graph=True)
        e_neg = self.energy(e2, negs)
        dist = (negs - torch.cat([y_true, y_true])).abs().flatten(1).sum(1)
        contrast = F.relu(torch.cat([e_true, e_true]) - e_neg + opts["margin"] * dist).mean() / cells
        inward = F.relu(g_true * (2 * y_true - 1))  # a gradient that would move y* into the box
        return opts["contrast"] * contrast + opts["stationary"] * (inward ** 2).mean()
