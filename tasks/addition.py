"""Binary addition: two L-bit numbers, least significant bit first, and their (L+1)-bit sum."""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, bits_string, check_count, check_seed


class Addition:
    """inputs (n, 2, L) in {0,1}, LSB first; targets (n, L+1), the sum LSB first."""

    name = "addition"
    sizes = SizeRange(1, 2048)
    in_channels = 2
    spatial_dims = 1
    classes = 2
    default_arch = "conv1d"
    train_size = 32
    dashboard_size = 32
    axis_label = "bit (most significant first)"

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (2, size)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size + 1,)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1])

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        rng = np.random.default_rng([seed, size, 2])
        x = rng.integers(0, 2, size=(n, 2, size), dtype=np.uint8)
        # ripple-carry over the bit axis, vectorised over problems
        y = np.zeros((n, size + 1), dtype=np.uint8)
        carry = np.zeros(n, dtype=np.uint8)
        for i in range(size):
            s = x[:, 0, i] + x[:, 1, i] + carry
            y[:, i] = s & 1
            carry = s >> 1
        y[:, size] = carry
        return x, y

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        # pad one zero column at the most significant end so the input length matches the sum's
        x = inputs.float()  # (B, 2, L)
        return torch.nn.functional.pad(x, (0, 1))  # (B, 2, L+1)

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """Bits shown most significant first, as people write numbers."""
        a, b = np.asarray(inputs)[0][::-1], np.asarray(inputs)[1][::-1]
        out = {"a": bits_string(a), "b": bits_string(b), "target": bits_string(np.asarray(target)[::-1]),
               "prediction": None, "correct": None}
        if pred is not None:
            out["prediction"] = bits_string(np.asarray(pred)[::-1])
            out["correct"] = (np.asarray(pred) == np.asarray(target))[::-1].tolist()
        return out
