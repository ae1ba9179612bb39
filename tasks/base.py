"""The Task protocol shared by every algorithmic task, and the errors tasks raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


class TaskError(ValueError):
    """A request a task cannot serve (unknown name, size out of range, malformed data)."""


@dataclass(frozen=True)
class SizeRange:
    """Accepted problem sizes: lo..hi inclusive, optionally odd only."""

    lo: int
    hi: int
    odd_only: bool = False

    def describe(self) -> str:
        return f"{self.lo}..{self.hi}" + (" (odd)" if self.odd_only else "")

    def check(self, task: str, size: int) -> int:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TaskError(f"{task}: size must be an integer, got {size!r}; accepted: {self.describe()}")
        size = int(size)
        if not self.lo <= size <= self.hi:
            raise TaskError(f"{task}: size {size} out of range; accepted: {self.describe()}")
        if self.odd_only and size % 2 == 0:
            raise TaskError(f"{task}: size {size} is even; accepted: odd sizes {self.describe()}")
        return size


class Task(Protocol):
    """An algorithmic task whose difficulty grows with `size`.

    Every task maps raw uint8 problems to a float encoding (B, C_in, *spatial) and has
    uint8 targets (B, *spatial) in {0, 1}: the model predicts one bit per output cell.
    """

    name: str
    sizes: SizeRange
    in_channels: int
    spatial_dims: int  # 1 for bit strings, 2 for grids
    classes: int  # output classes per cell (2 for every shipped task)
    default_arch: str  # the core its checkpoints use when the file name names none
    train_size: int  # the size the zoo trains at; benchmarks run there and at 4x
    dashboard_size: int  # the size the dashboard opens at
    axis_label: str  # x-axis label of a rendered 1-D problem ("" for grids)
    # `classes` > 2 for answers that are not bits (sudoku: 10, class d = digit d); the optional attributes a task
    # may declare are in OPTIONAL below, read through `optional(task, name)`

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n problems of the given size from the seed: (inputs uint8, targets uint8)."""
        ...

    def input_shape(self, size: int) -> tuple[int, ...]:
        """Shape of one problem's inputs (without the batch axis)."""
        ...

    def target_shape(self, size: int) -> tuple[int, ...]:
        """Shape of one problem's targets (without the batch axis)."""
        ...

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """uint8 inputs (B, ...) -> float (B, C_in, *target spatial shape)."""
        ...

    def size_of(self, inputs: np.ndarray) -> int:
        """The size that produced inputs of this shape (inverse of input_shape)."""
        ...

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """One problem for humans: see each task's docstring for the keys."""
        ...


# What a task may declare beyond the protocol, and what it means when it does not: every reader goes through
# `optional`, so a task (a plugin's too) declares only what it has.
OPTIONAL: dict[str, object] = {
    "variants": (),  # generator names, generate(..., variant=name); the first is the default
    "cell_mask": None,  # cell_mask(encoded) -> (B, *spatial) bool: cells where the loss counts and a prediction is read
    "legend": (),  # ((meaning, (r, g, b)), ...): the colours a renderer that draws an image uses
    "check_arrays": None,  # check_arrays(inputs, targets, size): a task whose values are not bits checks a file's
    # arrays itself (load_npz then skips the 0/1 check), raising a one-line TaskError
    "size_label": "problem size",  # what size counts, for labels ("blank cells")
    "size_ladder": None,  # the sizes sweeps offer, when a geometric ladder does not fit
    "shows_confidence": False,  # render takes a per-cell `confidence`; traces keep it
    # difficulty (tasks/difficulty.py): the measures' names (the first is the main one), difficulty(inputs,
    # targets) -> {name: per-problem values}, difficulty_range(size) -> (lo, hi) that generate(...,
    # difficulty=D) can draw, difficulty_drawable(size): the largest D drawn without strain, difficulty_help
    "difficulty_names": (),
    "difficulty": None,
    "difficulty_range": None,
    "difficulty_drawable": None,
    "difficulty_help": "",
}


def optional(task, name: str):
    """The task's optional attribute `name` (one of OPTIONAL), or its documented default when it has none."""
    if name not in OPTIONAL:
        raise KeyError(f"{name!r} is not an optional task attribute; they are: {', '.join(OPTIONAL)}")
    return getattr(task, name, OPTIONAL[name])


def tensors(task, inputs: np.ndarray, targets: np.ndarray | None = None,
            device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch as the models take it: the task's float encoding of the inputs and the targets as class indices
    (int64), both on `device` (targets None when none are given)."""
    x = task.encode(torch.as_tensor(np.ascontiguousarray(inputs))).to(device)
    y = None if targets is None else torch.as_tensor(np.ascontiguousarray(targets)).long().to(device)
    return x, y


def check_count(n: int, hi: int = 100_000) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= hi:
        raise TaskError(f"count must be an integer in 1..{hi}, got {n!r}")
    return int(n)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise TaskError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    return int(seed)


def bits_string(bits: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in np.asarray(bits).reshape(-1))
