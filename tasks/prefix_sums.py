"""Prefix sums mod 2: given L bits, output the running parity at every position."""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, bits_string, check_count, check_seed


class PrefixSums:
    """inputs (n, L) in {0,1}; targets (n, L) with targets[i] = (x_0 + ... + x_i) mod 2."""

    name = "prefix_sums"
    sizes = SizeRange(2, 4096)
    in_channels = 1
    spatial_dims = 1
    classes = 2  # output classes per cell
    default_arch = "conv1d"  # the core its checkpoints use unless named ({task}-{family} files)
    train_size = 32  # the size the zoo trains at (benchmarks run there and at 4x)
    dashboard_size = 64  # the size the dashboard opens at
    axis_label = "bit (least significant first)"

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1])

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        rng = np.random.default_rng([seed, size, 1])
        x = rng.integers(0, 2, size=(n, size), dtype=np.uint8)
        y = (np.cumsum(x, axis=1, dtype=np.int64) % 2).astype(np.uint8)
        return x, y

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float().unsqueeze(1)  # (B, 1, L)

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """{'input': bits, 'target': bits, 'prediction': bits or None, 'correct': per-bit bools}."""
        out = {"input": bits_string(inputs), "target": bits_string(target), "prediction": None, "correct": None}
        if pred is not None:
            out["prediction"] = bits_string(pred)
            out["correct"] = (np.asarray(pred) == np.asarray(target)).tolist()
        return out
