"""Explicit (feed-forward) family: `layers` distinct blocks applied once each."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .base import IterativeModel, IterState, tensor_bytes
from .config import ModelConfig
from .cores import make_block
from .registry import register_family


@register_family("explicit")
class ExplicitModel(IterativeModel):
    """Depth is fixed at `config.layers`: the stream always yields every layer; a larger budget
    cannot buy more compute, which is the point of this baseline."""

    label = "explicit (feed-forward, fixed depth)"
    order = 10
    color = "#7f7f7f"
    fixed_depth = True

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.blocks = nn.ModuleList(make_block(cfg) for _ in range(cfg.layers))
        self._init(seed)

    def stream(self, x: torch.Tensor, iters: int | None = None, z0: torch.Tensor | None = None,
               readout: bool = True, settings=None) -> Iterator[IterState]:
        self.run_settings(settings)
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        for k, block in enumerate(self.blocks, start=1):
            z = block(z, e)
            logits = self.readout(z) if readout or k == len(self.blocks) else None
            yield IterState(k=k, z=z, logits=logits, nfe=k, held_bytes=tensor_bytes(e))
