"""Recursive family: one weight-tied block looped k times, recalling the input every iteration."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import IterativeModel, IterState, LossFn, TrainStep, tensor_bytes
from .config import ModelConfig
from .cores import make_block
from .registry import register_family


def progressive_loss(model: RecursiveModel, x: torch.Tensor, loss_fn: LossFn,
                     step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
    """The progressive loss of Bansal et al. (2022): n iterations without gradient from the initial state, then
    k with gradient from the detached result, mixed by alpha with the loss at full depth. alpha 1 builds no
    full-depth graph at all (about 2.5x the steps per second on mazes).
    The model gives `run(x, iters, z0) -> state`, `state_readout(state)` and `detach_state(state)`: the state is
    the latent for the recursive family, the latent with the memory for the memory family."""
    loss = logits = None
    if step.alpha < 1:
        logits = model.state_readout(model.run(x, step.layers, z0=step.z0))
        loss = loss_fn(logits)
    if step.alpha > 0:
        with torch.no_grad():
            state = model.run(x, step.n, z0=step.z0) if step.n > 0 else step.z0
        prog = model.state_readout(model.run(x, step.k, z0=model.detach_state(state)))
        lp = loss_fn(prog)
        loss = lp if loss is None else (1 - step.alpha) * loss + step.alpha * lp
        logits = prog if logits is None else logits
    return loss, logits


@register_family("recursive")
class RecursiveModel(IterativeModel):
    """z_k = block(z_{k-1}, e) with e = encoder(x) recalled into every iteration (Bansal et al. 2022).
    `config.layers` is the iteration count it trained at; any budget can be asked for."""

    label = "recursive (weight-tied, looped, input recall)"
    order = 20
    color = "#1f77b4"

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.block = make_block(cfg)
        self._init(seed)

    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, settings=None) -> Iterator[IterState]:
        self.run_settings(settings)
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

    def state_readout(self, z: torch.Tensor) -> torch.Tensor:
        return self.readout(z)

    @staticmethod
    def detach_state(z: torch.Tensor | None) -> torch.Tensor | None:
        return None if z is None else z.detach()

    def training_loss(self, x: torch.Tensor, loss_fn: LossFn, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        return progressive_loss(self, x, loss_fn, step)
