"""The forward contract every family follows: a stream of per-iteration states.

`model.stream(x, iters)` yields one `IterState` per iteration (per layer for explicit models, per
solver step for DEQs). Training, evaluation, the CLI and the dashboard all consume this stream, so
they see the same numbers. `model(x, iters)` returns the last state's logits, differentiably.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .cores import Encoder, Readout, init_weights


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


def tensor_bytes(*ts: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


class IterativeModel(nn.Module):
    """Shared parts: the input encoder, the readout head and the contract's entry points."""

    config: ModelConfig

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.readout = Readout(cfg)

    def _init(self, seed: int) -> None:
        init_weights(self, torch.Generator().manual_seed(seed))

    @property
    def default_iters(self) -> int:
        """Iterations the model was built (or trained) for."""
        return self.config.layers

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, **options) -> Iterator[IterState]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, iters: int | None = None, **options) -> torch.Tensor:
        iters = self.default_iters if iters is None else iters
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        state = None
        for state in self.stream(x, iters, **options):  # noqa: B007 (the last state is the answer)
            pass
        return state.logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
