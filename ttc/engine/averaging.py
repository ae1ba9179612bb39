"""An exponential moving average of a model's weights, for training (`--ema`).

A looped maze model's extrapolation swings by tens of points between checkpoints of one run while its training
loss is zero; an average of the weights along the run (Polyak and Juditsky 1992; the EMA form used widely since,
e.g. Izmailov et al. 2018 for SWA) is one way to keep what the iterates share. The average is what the run
validates and keeps when it is on; the raw weights keep training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The EMA of `model`'s floating-point parameters and buffers: after step t, avg <- avg + (1 - d_t)(w - avg)
    with d_t = min(decay, (1 + t) / (10 + t)), so early steps (far from the average's horizon) are not frozen in
    by the initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema must be in (0, 1), got {decay!r}")
        self.decay, self.updates = float(decay), 0
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def _floats(self, model: nn.Module) -> list[torch.Tensor]:
        sd = model.state_dict()
        return [sd[k] for k in self.avg]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        torch._foreach_lerp_(list(self.avg.values()), self._floats(model), 1.0 - d)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """`model` holds the averaged weights inside the block and its own again after it (an error too)."""
        own = {k: v.detach().clone() for k, v in zip(self.avg, self._floats(model), strict=True)}
        with torch.no_grad():
            for t, a in zip(self._floats(model), self.avg.values(), strict=True):
                t.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for t, a in zip(self._floats(model), own.values(), strict=True):
                    t.copy_(a)
