"""Prefix sums mod 2: given L bits, output the running parity at every position."""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, bits_string, check_count, check_seed
from .difficulty import check_difficulty


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
    difficulty_names = ("dependency",)
    difficulty_help = ("the dependency span: from the first 1 bit to the end (L - index of the first 1; 0 when every "
                       "bit is 0): the outputs before the first 1 are 0 whatever comes later, and the last output "
                       "depends on that bit; drawn exactly")

    def difficulty_range(self, size: int) -> tuple[int, int]:
        return 0, size

    def difficulty(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(inputs).astype(bool)
        first = np.where(x.any(axis=1), x.argmax(axis=1), x.shape[1])
        return {"dependency": (x.shape[1] - first).astype(np.int64)}

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size,)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1])

    def generate(self, size: int, n: int, seed: int, difficulty: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n problems from the seed; with difficulty D, each with its first 1 bit at L - D (D = 0: all zeros)."""
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        if difficulty is not None:
            d = check_difficulty(self, size, difficulty)
            rng = np.random.default_rng([seed, size, 1, d, 17])
            x = rng.integers(0, 2, size=(n, size), dtype=np.uint8)
            x[:, : size - d] = 0
            if d:
                x[:, size - d] = 1
        else:
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
