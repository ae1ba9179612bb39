"""External-memory family: a looped controller that reads and writes S memory slots every iteration.

The controller is one of the cores, weight-tied and looped with input recall as in the recursive family. Beside
the per-position state z (B, W, *spatial) it carries a memory M (B, S, W) of S slots that persists across
iterations. One iteration (one read-update-write cycle, the Neural Turing Machine / DNC recipe of Graves et
al. 2014, 2016, with content addressing only):

    read    r = softmax_s(q(z) . M_s / sqrt(W))            (B, P, S)  each position attends over the slots
            z <- block(z + R(r M), e)                                the core updates the state with what it read
    write   w = softmax_s(k(z) . M_s / sqrt(W))            (B, P, S)
            M_s <- M_s * (1 - mean_p w_ps erase_p) + mean_p w_ps erase_p * add_p

with erase = sigmoid(.) and add = tanh(.) of the new state. The add is gated by the erase, so every write is a
convex step of the slot towards the written content and the memory stays bounded (|M| <= max(1, |M_0|)) for
any number of iterations; with NTM's independent add the first trained model's slot norms grew linearly with
the iterations (1 at the start, 98 after 300) and its answers were lost beyond the training depth.
Writes are averaged over the P positions, so the
memory's scale does not depend on the problem size: S is fixed and does not grow with the problem. What a
larger problem cannot get from the memory it has to get from the core's local propagation, which is what
the recursive family relies on alone. R starts at zero, so an untrained memory model is its recursive core.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .base import IterativeModel, IterState, LossFn, TrainStep, tensor_bytes
from .config import ModelConfig
from .cores import make_block
from .recursive import progressive_loss
from .registry import register_family


@dataclass
class MemoryState:
    """The whole state of a memory model between iterations: the per-position latent and the memory."""

    z: torch.Tensor  # (B, W, *spatial)
    m: torch.Tensor  # (B, S, W)

    def detach(self) -> MemoryState:
        return MemoryState(self.z.detach(), self.m.detach())


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """(B,) mean over positions of the entropy (nats) of each position's distribution over slots."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean(-1)


@register_family("memory")
class MemoryModel(IterativeModel):
    """A looped core with input recall plus an external memory of `config.slots` slots read and written every
    iteration. `config.layers` is the iteration count it trained at; any budget can be asked for."""

    label = "external memory (looped controller reading and writing S slots)"
    order = 35
    color = "#8c564b"
    extra_series = ("memory_norm", "read_entropy", "write_entropy")
    extra_maps = ("read", "write")  # (B, positions, slots) per iteration, for the inspector's heat map
    series_labels = {"memory_norm": "mean slot norm ||M_s||", "read_entropy": "read entropy over slots (nats)",
                     "write_entropy": "write entropy over slots (nats)"}
    map_views = (("slot_weights", ("read", "write"), "Memory read/write weights"),)

    @property
    def reach_per_iteration(self) -> int | None:
        """None: every position reads and writes the shared slots each iteration, so information can cross the whole
        problem in one iteration (what the memory carries is bounded by its size, not by distance)."""
        return None

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        w, s = cfg.width, cfg.slots
        self.block = make_block(cfg)
        self.query = nn.Linear(w, w)
        self.write = nn.Linear(w, 3 * w)  # the write's key, erase and add vectors, from the new state
        self.read_in = nn.Linear(w, w)
        self.memory0 = nn.Parameter(torch.zeros(s, w))  # the memory's initial content, learned
        self._init(seed)

    def _init(self, seed: int) -> None:
        super()._init(seed)
        gen = torch.Generator().manual_seed(seed + 7919)
        with torch.no_grad():
            # distinct slots (identical ones would receive identical addresses forever); drawn on the CPU, where the
            # generator lives, also when the model is built on the meta device to check a checkpoint's shapes (a
            # draw there would load meta kernels: 2 s on the first checkpoint the dashboard opens)
            draw = torch.randn(self.memory0.shape, generator=gen, device="cpu")
            self.memory0.copy_(draw / math.sqrt(self.config.width))
            self.read_in.weight.zero_()  # the read enters at zero: untrained, the model is its recursive core
            self.read_in.bias.zero_()

    # -- one cycle -------------------------------------------------------------------------------------------
    @staticmethod
    def _address(keys: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """(B, P, S) softmax over slots of the content match between keys (B, P, W) and the memory (B, S, W)."""
        return torch.softmax(keys @ m.transpose(1, 2) / math.sqrt(keys.shape[-1]), dim=-1)

    def _cycle(self, st: MemoryState, e: torch.Tensor) -> tuple[MemoryState, torch.Tensor, torch.Tensor]:
        z, m = st.z, st.m
        h = z.flatten(2).transpose(1, 2)  # (B, P, W)
        r = self._address(self.query(h), m)
        read = self.read_in(r @ m)  # (B, P, W)
        z = self.block(z + read.transpose(1, 2).reshape(z.shape), e)
        h = z.flatten(2).transpose(1, 2)
        key, erase, add = self.write(h).chunk(3, dim=-1)
        w = self._address(key, m)
        wt = w.transpose(1, 2) / h.shape[1]  # (B, S, P): a mean over positions
        erase = torch.sigmoid(erase)
        # erase-then-add with the add gated by the erase: each entry moves a convex step towards tanh(add), so
        # |M| never exceeds max(1, |M_0|) however long the loop runs (an ungated add grew the memory linearly
        # with the iterations and the model lost its answers beyond the training depth)
        m = m * (1 - wt @ erase) + wt @ (erase * torch.tanh(add))
        return MemoryState(z, m), r, w

    def initial_state(self, e: torch.Tensor, z0: torch.Tensor | MemoryState | None) -> MemoryState:
        if isinstance(z0, MemoryState):
            return z0
        m = self.memory0.unsqueeze(0).expand(e.shape[0], -1, -1)
        return MemoryState(torch.zeros_like(e) if z0 is None else z0, m)

    # -- the contract ----------------------------------------------------------------------------------------
    def stream(self, x: torch.Tensor, iters: int, z0: torch.Tensor | None = None,
               readout: bool = True, settings=None) -> Iterator[IterState]:
        self.run_settings(settings)
        e = self.encoder(x)
        st = self.initial_state(e, z0)
        for k in range(1, iters + 1):
            st, r, w = self._cycle(st, e)
            logits = self.readout(st.z) if readout or k == iters else None
            series = {"memory_norm": st.m.norm(dim=-1).mean(-1), "read_entropy": _entropy(r),
                      "write_entropy": _entropy(w)}
            yield IterState(k=k, z=st.z, logits=logits, nfe=k, held_bytes=tensor_bytes(e, st.m), series=series,
                            maps={"read": r, "write": w, "memory": st.m.norm(dim=-1)})

    def run(self, x: torch.Tensor, iters: int, z0: torch.Tensor | MemoryState | None = None) -> MemoryState:
        """The state after `iters` cycles, without readouts (training's progressive loss)."""
        e = self.encoder(x)
        st = self.initial_state(e, z0)
        for _ in range(iters):
            st = self._cycle(st, e)[0]
        return st

    def state_readout(self, st: MemoryState) -> torch.Tensor:
        return self.readout(st.z)

    @staticmethod
    def detach_state(st: MemoryState | torch.Tensor | None):
        return None if st is None else st.detach()

    def training_loss(self, x: torch.Tensor, loss_fn: LossFn, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        return progressive_loss(self, x, loss_fn, step)  # the recursive family's loss, over (z, M)
