"""The forward contract every family follows: a stream of per-iteration states.

`model.stream(x, iters)` yields one `IterState` per iteration (per layer for explicit models, per
solver step for DEQs). Training, evaluation, the CLI and the dashboard all consume this stream, so
they see the same numbers. `model(x, iters)` returns the last state's logits, differentiably.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch
from torch import nn

from .config import ConfigError, ModelConfig
from .cores import Encoder, Readout, init_weights

LossFn = Callable[[torch.Tensor], torch.Tensor]  # logits (B, C, *spatial) -> scalar loss against the batch's targets


@dataclass(frozen=True)
class NoSettings:
    """Run settings of a family that has none. Every family's settings are a frozen dataclass like this one:
    built from keyword options (unknown names are an error), passed to `stream` as an argument, never
    stored on a shared model."""

    @classmethod
    def from_options(cls, **options: Any):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown run options {unknown} for {cls.__name__}; accepted: "
                              f"{', '.join(sorted(known)) or 'none'}")
        return cls(**options)

    def updated(self, **changes: Any):
        """A copy with some options changed (validated like a new one); None values are left as they are."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown run options {unknown} for {type(self).__name__}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_stop_tolerance(self, tol: float):
        """These settings stopping at `tol` where the family stops by a tolerance of its own (a DEQ's solver, an
        EBM's descent); unchanged for a family that has none (the probe then applies tol to the state's change)."""
        return self

    def run_to_budget(self):
        """These settings running every iteration of the budget (no tolerance stop): what benchmarks time."""
        return self


class StopsAtTolerance:
    """Mixin for run settings with a `tol` field at which the family stops a sample by itself (a DEQ's solver, an
    EBM's descent): the probe's tolerance goes there, and benchmarks run the whole budget with tol 0."""

    def with_stop_tolerance(self, tol: float):
        return self.updated(tol=tol)

    def run_to_budget(self):
        return self.updated(tol=0.0)


@dataclass(frozen=True)
class Widget:
    """A dashboard control for one run setting, described by the family so the app draws it without knowing
    the family. kind: "select" (one of choices) or "number" (lo..hi). The key is the settings field and the
    URL query parameter."""

    key: str
    label: str
    kind: str  # "select" | "number"
    default: Any
    choices: tuple = ()
    lo: float = 0.0  # number: the range; select of numbers: values outside (lo, hi) are refused
    hi: float = 1.0
    help: str = ""
    cli: str = ""  # the eval command's flag for it ("" when it has none)
    field: str = ""  # the Settings field it sets directly ("" when it sets one indirectly, as damping does)


@dataclass
class TrainStep:
    """What one training step asks of a family's loss: the loop draws it, the family uses what applies."""

    layers: int  # training iterations (max_iters)
    n: int  # progressive loss: iterations run without gradient first
    k: int  # then iterations with gradient
    alpha: float  # progressive-loss weight (0: loss at full depth only, 1: progressive only)
    z0: torch.Tensor | None = None  # initial state (None: zeros)
    settings: Any = None  # the family's run settings for training (None: the model's)
    generator: torch.Generator | None = None  # this step's randomness (Hutchinson probes, noise)
    extras: dict = field(default_factory=dict)  # the family's own training options by name, "targets" (B, *spatial)


@dataclass
class IterState:
    k: int  # 1-based iteration (layer, solver step) index
    z: torch.Tensor  # latent state after iteration k, (B, W, *spatial)
    logits: torch.Tensor  # readout of z, (B, 2, *spatial)
    nfe: int  # function (block) evaluations spent so far
    residual: torch.Tensor | None = None  # (B,) relative residual, when the family defines its own
    converged: torch.Tensor | None = None  # (B,) bool, when the family tracks it (solvers)
    diverged: torch.Tensor | None = None  # (B,) bool
    held_bytes: int = 0  # bytes of state tensors the iteration holds beyond z and logits (solver history)
    series: dict[str, torch.Tensor] | None = None  # (B,) per-sample extra series the family declares
    maps: dict[str, torch.Tensor] | None = None  # (B, positions, ...) per-sample maps (memory read/write weights)


def tensor_bytes(*ts: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


UNROLLED = "unrolled"  # the memory mode that backpropagates through every iteration: the baseline of comparisons


class IterativeModel(nn.Module):
    """Shared parts: the input encoder, the readout head and the contract's entry points.

    A family is a subclass registered by name (`@register_family("name")`). It declares here everything
    that differs between families, so that code outside `models/` asks the class and never its name.
    """

    config: ModelConfig
    family_name: ClassVar[str] = ""  # set by register_family
    label: ClassVar[str] = ""  # one line for humans (legends, the zoo)
    order: ClassVar[int] = 50  # display order among families
    color: ClassVar[str] = "#9467bd"  # the family's colour in every figure
    fixed_depth: ClassVar[bool] = False  # depth fixed by the architecture: more budget buys nothing
    default_norm: ClassVar[bool] = False  # group norm in the block unless the training config says otherwise
    needs_grad: ClassVar[bool] = False  # inference itself takes gradients (energy descent): no inference_mode
    has_solver: ClassVar[bool] = False  # its iterates come from a fixed-point solver (solver stops, backward modes)
    Settings: ClassVar[type] = NoSettings  # run settings, a frozen dataclass with from_options/updated
    extra_series: ClassVar[tuple[str, ...]] = ()  # names of per-iteration IterState.series it reports
    extra_maps: ClassVar[tuple[str, ...]] = ()  # names of per-iteration IterState.maps it reports (heat maps)
    series_labels: ClassVar[dict[str, str]] = {}  # axis label of each extra series (default: its name, spaced)
    # the inspector's views of its maps: (figure kind, the maps it draws in the kind's order, what it shows); the
    # kinds are ttc.app.plots.MAP_FIGURES ("answer_frames": one map, (B, C, *spatial) per iteration, forming;
    # "slot_weights": two maps, (B, positions, slots) per iteration, e.g. read and write weights)
    map_views: ClassVar[tuple[tuple[str, tuple[str, ...], str], ...]] = ()
    breadth_series: ClassVar[str | None] = None  # the series that ranks starts in breadth (None: final residual)
    memory_modes: ClassVar[tuple[str, ...]] = ()  # training-memory modes `memory_loss` runs (python -m ttc memory)
    memory_caption: ClassVar[str] = ""  # one sentence saying what its memory modes do (the Memory page)
    # how each memory mode is drawn wherever modes are compared: mode -> (colour, dash, marker); UNROLLED, when a
    # family declares it, is the baseline the others are measured against (backprop through every iteration)
    memory_mode_styles: ClassVar[dict[str, tuple[str, str, str]]] = {}
    # a family's own training options with their defaults, beyond TrainConfig's fields: `python -m ttc train
    # --family-options '{"name": value}'` sets them (unknown names and other types are refused), the loss reads them
    # from TrainStep.extras, the card records them
    train_option_defaults: ClassVar[dict[str, Any]] = {}
    # their accepted ranges, name -> (lo, hi, open_low): a value outside is refused before training, in one line
    # naming its flag (open_low: lo itself is refused too)
    train_option_ranges: ClassVar[dict[str, tuple[float, float, bool]]] = {}

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.readout = Readout(cfg)
        self.settings = self.Settings()  # the defaults this model runs with; per-call settings override them

    @classmethod
    def widgets(cls) -> tuple[Widget, ...]:
        """Dashboard controls for this family's run settings (none by default)."""
        return ()

    @classmethod
    def active_widgets(cls, values: dict[str, Any]) -> tuple[Widget, ...]:
        """The widgets that apply given the current values (others are hidden and keep their defaults)."""
        return cls.widgets()

    @classmethod
    def settings_from_widgets(cls, values: dict[str, Any]):
        """Run settings from the widgets' values (keyed by Widget.key)."""
        return cls.Settings.from_options(**values)

    @classmethod
    def widget_values(cls, settings) -> dict[str, Any]:
        """The widgets' values that show these settings (inverse of settings_from_widgets)."""
        return {w.key: getattr(settings, w.key) for w in cls.widgets()}

    def budget(self, asked: int) -> int:
        """Iterations a run asked for `asked` yields (a fixed-depth family always runs its depth)."""
        return self.config.layers if self.fixed_depth else asked

    def run_settings(self, settings=None, **options: Any):
        """settings (or the model's own) with options applied; the family's validation applies."""
        base = self.settings if settings is None else settings
        same_fields = {f.name for f in fields(base)} == {f.name for f in fields(self.Settings)} \
            if isinstance(base, self.Settings) else False
        if not same_fields:  # another family's settings (even a subclass with more fields) would be half ignored
            raise ConfigError(f"{self.family_name} takes run settings {self.Settings.__name__}, got "
                              f"{type(base).__name__}")
        return base.updated(**options) if options else base

    @classmethod
    def settings_for_training(cls, options: dict[str, Any]):
        """The run settings a training run uses, from its TrainConfig fields (default: the family's defaults)."""
        return cls.Settings()

    def settings_from_card(self, card: dict):
        """The run settings a checkpoint's card recommends (default: the family's defaults)."""
        return self.Settings()

    def training_loss(self, x: torch.Tensor, loss_fn: LossFn, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one training step: by default the loss of the readout at full training depth."""
        logits = self(x, step.layers, settings=step.settings)
        return loss_fn(logits), logits

    def memory_loss(self, x: torch.Tensor, loss_fn: LossFn, mode: str, iters: int,
                    **options: Any) -> tuple[torch.Tensor, dict]:
        """(loss, {"nfe", "method"}) of one training step in memory mode `mode` (one of memory_modes) with an
        iteration budget `iters`: what `python -m ttc memory` measures."""
        raise NotImplementedError(f"{self.family_name} declares no memory modes")

    def fixed_point_map(self, x: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """(f, z0): the map a solver iterates on encoded inputs x and its initial state, for a family with a solver
        (the engine's solver benchmarks call it; they never reach into the model's parts)."""
        raise NotImplementedError(f"{self.family_name} has no fixed-point map")

    def perturbed_start(self, final: torch.Tensor, scale: float, rms: float, generator: torch.Generator
                        ) -> torch.Tensor:
        """An initial state for path-independence and breadth runs, shaped like a run's final state: Gaussian
        noise of std `scale` x `rms` (the zero start's final RMS)."""
        return scale * rms * torch.randn(final.shape, generator=generator)

    def _init(self, seed: int) -> None:
        init_weights(self, torch.Generator().manual_seed(seed))

    @property
    def state_channels(self) -> int:
        """Channels of the streamed state z (B, C, *spatial): the latent width, or what the family iterates on
        instead (an energy-based model's relaxed answer y)."""
        return self.config.width

    @property
    def reach_per_iteration(self) -> int | None:
        """How many cells (along one axis) information can move in one iteration, where the family has a bound: its
        block's reach (a family whose step does more, or reaches everywhere, says so). A problem whose answer needs
        information d cells away then needs at least d / reach iterations: the physical limit drawn beside
        iterations-needed-against-difficulty. None: no bound (full attention, an external memory)."""
        block = getattr(self, "block", None)
        if block is None and hasattr(self, "blocks"):
            block = self.blocks[0]
        return getattr(block, "reach", None)

    @property
    def default_iters(self) -> int:
        """Iterations the model was built (or trained) for."""
        return self.config.layers

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, settings=None) -> Iterator[IterState]:
        """One IterState per iteration 1..iters (x: (B, C_in, *spatial)); settings: the family's Settings."""
        raise NotImplementedError

    def checked_iters(self, iters: int | None) -> int:
        """The iteration count a forward call asked for (None: the model's own), refused unless a positive int."""
        iters = self.default_iters if iters is None else iters
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        return iters

    def forward(self, x: torch.Tensor, iters: int | None = None, settings=None) -> torch.Tensor:
        iters = self.checked_iters(iters)
        state = None
        for state in self.stream(x, iters, settings=settings):  # noqa: B007 (the last state is the answer)
            pass
        return state.logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
