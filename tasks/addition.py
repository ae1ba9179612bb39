"""Binary addition: two L-bit numbers, least significant bit first, and their (L+1)-bit sum."""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, TaskError, bits_string, check_count, check_seed
from .difficulty import check_difficulty, longest_run


def carries(x: np.ndarray) -> np.ndarray:
    """(n, 2, L) addends, LSB first -> (n, L) carries c_1..c_L, c_{i+1} = [a_i + b_i + c_i >= 2], c_0 = 0."""
    n, _, size = x.shape
    c = np.zeros((n, size), dtype=np.uint8)
    carry = np.zeros(n, dtype=np.uint8)
    for i in range(size):
        carry = ((x[:, 0, i].astype(np.uint8) + x[:, 1, i] + carry) >= 2).astype(np.uint8)
        c[:, i] = carry
    return c


def _sum_bits(x: np.ndarray) -> np.ndarray:
    """(n, 2, L) addends -> (n, L + 1) their sums, LSB first: ripple-carry over the bit axis, vectorised over rows."""
    n, _, size = x.shape
    y = np.zeros((n, size + 1), dtype=np.uint8)
    carry = np.zeros(n, dtype=np.uint8)
    for i in range(size):
        s = x[:, 0, i] + x[:, 1, i] + carry
        y[:, i] = s & 1
        carry = s >> 1
    y[:, size] = carry
    return y


def _with_chain(size: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """One problem (2, L) whose longest carry chain is exactly d: a generate at s, propagates at s+1..s+d-1, kills at
    s-1 and s+d (where they exist), random bits elsewhere with every longer chain cut by a kill. Linear in L."""
    x = rng.integers(0, 2, size=(2, size), dtype=np.uint8)
    if d == 0:  # no carry at all: never both bits 1
        both = (x[0] == 1) & (x[1] == 1)
        x[1, both] = 0
        return x
    s = int(rng.integers(0, size - d + 1))
    x[:, s] = 1  # generate: c_{s+1} = 1
    if s >= 1:
        x[:, s - 1] = 0  # kill: c_s = 0, so the chain starts at c_{s+1}
    for i in range(s + 1, s + d):  # propagate: exactly one of the two bits
        x[0, i] = rng.integers(0, 2)
        x[1, i] = 1 - x[0, i]
    if s + d < size:
        x[:, s + d] = 0  # kill: c_{s+d+1} = 0
    # cut every other chain longer than d (they lie left of s-1 or right of s+d, so the one above is untouched)
    run, carry = 0, 0
    for i in range(size):
        if s - 1 <= i <= s + d:
            carry = 1 if s <= i < s + d else 0
            run = (i - s + 1) if carry else 0
            continue
        c = int(x[0, i]) + int(x[1, i]) + carry >= 2
        if c and run == d:  # this carry would make a chain of d + 1: kill it
            x[:, i] = 0
            c = False
        carry = int(c)
        run = run + 1 if c else 0
    return x


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
    difficulty_names = ("carry_chain",)
    difficulty_help = ("the longest carry chain: the longest run of 1s in c_1..c_L, c_0 = 0, c_{i+1} = [a_i + b_i + "
                       "c_i >= 2]; drawn exactly")

    def difficulty_range(self, size: int) -> tuple[int, int]:
        return 0, size

    def difficulty(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """carry_chain: how far one carry must travel, the iterations a one-step-per-iteration adder needs."""
        return {"carry_chain": longest_run(carries(np.asarray(inputs)))}

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (2, size)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size + 1,)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1])

    def generate(self, size: int, n: int, seed: int, difficulty: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n problems from the seed; with difficulty D, each with its longest carry chain exactly D (0..size)."""
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        if difficulty is not None:
            d = check_difficulty(self, size, difficulty)
            rng = np.random.default_rng([seed, size, 2, d, 17])
            x = np.stack([_with_chain(size, d, rng) for _ in range(n)])
            y = _sum_bits(x)
            if (longest_run(carries(x)) != d).any():  # the construction's promise, checked
                raise TaskError(f"addition: internal error drawing carry chains of {d}")
            return x, y
        rng = np.random.default_rng([seed, size, 2])
        x = rng.integers(0, 2, size=(n, 2, size), dtype=np.uint8)
        return x, _sum_bits(x)

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
