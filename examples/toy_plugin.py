"""A plugin for TTC Lab: one family and one task, registered from outside the repository. The family declares
its own run setting (a dashboard widget), training option (a train flag), per-iteration series and map (drawn by
the dashboard) and memory modes (python -m ttc memory, the Memory page, the bench).

    TTC_PLUGINS=toy_plugin python -m ttc train --task running_or --family relaxed --sizes 16 --steps 200 \
        --mix-train 0.8 --out runs/running_or-relaxed.safetensors
    TTC_PLUGINS=toy_plugin python -m ttc eval --checkpoint runs/running_or-relaxed.safetensors --size 64 \
        --iters 100 --option mix=0.5 --json
    TTC_PLUGINS=toy_plugin TTC_CHECKPOINTS=runs streamlit run app.py

(the folder holding this file must be on the import path: run from it, or set PYTHONPATH).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models import UNROLLED, IterState, NoSettings, RecursiveModel, Widget, register_family
from models.base import tensor_bytes
from tasks import SizeRange, TaskError, register_task
from tasks.base import bits_string


@dataclass(frozen=True)
class RelaxedSettings(NoSettings):
    """mix: the relaxation of each step, z <- (1 - mix) z + mix block(z, e) (1: the plain recursive step)."""

    mix: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.mix, bool) or not isinstance(self.mix, (int, float)) or not 0 < self.mix <= 1:
            raise ValueError(f"mix must be a number in (0, 1], got {self.mix!r}")


@register_family("relaxed")
class RelaxedRecursive(RecursiveModel):
    """A recursive model whose step is relaxed at run time: same weights, a family of its own."""

    label = "relaxed recursive (plugin)"
    order = 25
    color = "#2ca02c"
    Settings = RelaxedSettings
    # its own training option: the relaxation it trains with (`python -m ttc train ... --mix-train 0.8`)
    train_option_defaults = {"mix_train": 1.0}
    train_option_ranges = {"mix_train": (0.0, 1.0, True)}
    # a series and a map per iteration, with how to label and draw them
    extra_series = ("step_norm",)
    series_labels = {"step_norm": "RMS change of the state per step"}
    extra_maps = ("state_norm",)
    map_views = (("answer_frames", ("state_norm",), "Norm of the state per position"),)
    # memory modes: backprop through every step, or through the last one only
    memory_modes = (UNROLLED, "last_step")
    memory_mode_styles = {UNROLLED: ("#d62728", "solid", "circle"), "last_step": ("#17becf", "dash", "diamond")}
    memory_caption = "Unrolled backprop through every step; last_step runs all but the last step without a graph."

    def training_loss(self, x: torch.Tensor, loss_fn, step) -> tuple[torch.Tensor, torch.Tensor]:
        """The progressive loss, every step relaxed by its training option mix_train (TrainStep.extras)."""
        self._mix = float(step.extras.get("mix_train", 1.0))
        try:
            return super().training_loss(x, loss_fn, step)
        finally:
            self._mix = 1.0

    def run(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None) -> torch.Tensor:
        mix = getattr(self, "_mix", 1.0)
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        for _ in range(iters):
            z = (1 - mix) * z + mix * self.block(z, e)
        return z

    def memory_loss(self, x: torch.Tensor, loss_fn, mode: str, iters: int, **options) -> tuple[torch.Tensor, dict]:
        e = self.encoder(x)
        z = torch.zeros_like(e)
        free = iters if mode == UNROLLED else iters - 1
        with contextlib.nullcontext() if mode == UNROLLED else torch.no_grad():
            for _ in range(free):
                z = self.block(z, e)
        if mode != UNROLLED:
            z = self.block(z, e)
        return loss_fn(self.readout(z)), {"nfe": iters, "method": mode}

    @classmethod
    def widgets(cls) -> tuple[Widget, ...]:
        return (Widget("mix", "Relaxation", "number", 1.0, lo=0.1, hi=1.0, field="mix",
                       help="z <- (1 - mix) z + mix block(z, e)"),)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None, readout: bool = True,
               settings: RelaxedSettings | None = None) -> Iterator[IterState]:
        s = self.run_settings(settings)
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        width = math.sqrt(e.shape[1])
        for k in range(1, iters + 1):
            prev = z
            z = (1 - s.mix) * z + s.mix * self.block(z, e)
            logits = self.readout(z) if readout or k == iters else None
            step = (z - prev).flatten(1).pow(2).mean(1).sqrt()
            norm = torch.tanh(z.norm(dim=1, keepdim=True) / width)  # (B, 1, L) in [0, 1): drawn like an answer
            yield IterState(k=k, z=z, logits=logits, nfe=k, held_bytes=tensor_bytes(e), series={"step_norm": step},
                            maps={"state_norm": norm})


@register_task
class RunningOr:
    """inputs (n, L) in {0,1}; targets (n, L) with targets[i] = x_0 or ... or x_i (a front that travels)."""

    name = "running_or"
    sizes = SizeRange(2, 512)
    in_channels = 1
    spatial_dims = 1
    classes = 2
    default_arch = "conv1d"
    train_size = 16
    dashboard_size = 32
    axis_label = "position"

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1])

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.sizes.check(self.name, size)
        rng = np.random.default_rng([seed, size, 99])
        first = rng.integers(0, size, n)  # the first 1 sits anywhere: most of the string must be carried
        x = np.zeros((n, size), dtype=np.uint8)
        x[np.arange(n), first] = 1
        x |= (rng.random((n, size)) < 0.02).astype(np.uint8) * (np.arange(size) > first[:, None])
        return x, np.maximum.accumulate(x, axis=1).astype(np.uint8)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float().unsqueeze(1)

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """{'input': bits, 'target': bits, 'prediction': bits or None, 'correct': per-bit bools} (as prefix sums)."""
        inputs = np.asarray(inputs)
        if inputs.ndim != 1:
            raise TaskError(f"running_or: render expects inputs (L,), got {inputs.shape}")
        out = {"input": bits_string(inputs), "target": bits_string(target), "prediction": None, "correct": None}
        if pred is not None:
            out["prediction"] = bits_string(pred)
            out["correct"] = (np.asarray(pred) == np.asarray(target)).tolist()
        return out
