"""Recursive family: one weight-tied block looped k times, recalling the input every iteration."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import IterativeModel, IterState, tensor_bytes
from .config import ModelConfig
from .cores import make_block


class RecursiveModel(IterativeModel):
    """z_k = block(z_{k-1}, e) with e = encoder(x) recalled into every iteration (Bansal et al. 2022).
    `config.layers` is the iteration count it trained at; any budget can be asked for."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.block = make_block(cfg)
        self._init(seed)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, **options) -> Iterator[IterState]:
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        for k in range(1, iters + 1):
            z = self.block(z, e)
            logits = self.readout(z) if readout or k == iters else None
            yield IterState(k=k, z=z, logits=logits, nfe=k, held_bytes=tensor_bytes(e))

    def run(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None) -> torch.Tensor:
        """The latent after `iters` iterations, without readouts (training's progressive loss)."""
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        for _ in range(iters):
            z = self.block(z, e)
        return z
