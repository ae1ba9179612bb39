"""Per-problem algorithmic difficulty: the length of the dependency a problem's answer needs, not its size.

A task that measures difficulty declares `difficulty_names` (its measures, the main one first) and
`difficulty(inputs, targets) -> {name: (n,) int64}`; one that can draw problems at a chosen difficulty takes
`generate(size, n, seed, difficulty=D)` and says what D means in `difficulty_help`. `measure(task, ...)` and
`main_name(task)` are what the engine calls; a task without the optional members has no difficulty (None).
"""

from __future__ import annotations

import numpy as np

from .base import TaskError, optional


def names(task) -> tuple[str, ...]:
    return tuple(optional(task, "difficulty_names") or ())


def main_name(task) -> str | None:
    n = names(task)
    return n[0] if n else None


def measure(task, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray] | None:
    """Every measure of the task for each problem (None when the task has none)."""
    fn = optional(task, "difficulty")
    if fn is None or not names(task):
        return None
    out = fn(np.asarray(inputs), np.asarray(targets))
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def check_difficulty(task, size: int, difficulty) -> int:
    """A difficulty value the task can draw at this size, else a TaskError saying the accepted range."""
    lo_hi = optional(task, "difficulty_range")
    if lo_hi is None or "difficulty" not in _params(task.generate):
        raise TaskError(f"{task.name}: problems cannot be drawn at a chosen difficulty")
    lo, hi = lo_hi(size)
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)):
        raise TaskError(f"{task.name}: difficulty must be an integer, got {difficulty!r}")
    if not lo <= int(difficulty) <= hi:
        raise TaskError(f"{task.name}: difficulty {difficulty} is impossible at size {size}; accepted there: "
                        f"{lo}..{hi} ({optional(task, 'difficulty_help')})")
    return int(difficulty)


def draw(task, size: int, n: int, seed: int, difficulty: int | None = None, **opts):
    """task.generate, at a chosen difficulty when one is given: the one place problems are drawn at a difficulty
    (a task that cannot draw one, or a difficulty it cannot reach at that size, is a one-line TaskError)."""
    if difficulty is None:
        return task.generate(size, n, seed, **opts)
    check_difficulty(task, size, difficulty)
    return task.generate(size, n, seed, difficulty=difficulty, **opts)


def _params(fn) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def longest_run(bits: np.ndarray) -> np.ndarray:
    """(n, L) 0/1 -> (n,) the longest run of consecutive 1s in each row (vectorised, no Python loop over rows)."""
    b = np.asarray(bits).astype(bool)
    n, length = b.shape
    if length == 0:
        return np.zeros(n, dtype=np.int64)
    idx = np.arange(1, length + 1)
    # position of the last 0 at or before each index (0 when none): run length = index - that position
    last_zero = np.maximum.accumulate(np.where(b, 0, idx), axis=1)
    return (idx - last_zero).max(axis=1).astype(np.int64)
