"""The frontier: where a looped model starts to fail, found by measuring.

A model's frontier is the smallest problem size (or, at a fixed size, difficulty) at which its best accuracy with
ample iterations lies between 20% and 90%. Below it every model is at 100% and the analyses (path independence,
fixed point against best iterate, halting, breadth) have nothing to separate; at the frontier they read differently.
`find_frontier` doubles the size from the training size until the accuracy drops into the band, then bisects
between the last size above the band and the first below it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models import IterativeModel
from tasks import Task
from tasks.difficulty import draw

from .evaluate import evaluate
from .limits import MAX_COST, run_cost

BAND = (0.2, 0.9)


def _snap(task: Task, size: int) -> int:
    r = task.sizes
    size = int(min(max(size, r.lo), r.hi))
    if r.odd_only and size % 2 == 0:
        size = size + 1 if size + 1 <= r.hi else size - 1
    return size


def find_frontier(model: IterativeModel, task: Task, start: int, iters: int, n: int = 50, seed: int = 0,
                  precision: str | None = None, settings=None, band: tuple[float, float] = BAND,
                  on_size: Callable[[int, float], None] | None = None, max_steps: int = 12,
                  difficulty_at: int | None = None, max_cost: float = MAX_COST) -> dict:
    """{"size" (or "difficulty"), "best_accuracy", "in_band", "scanned": [(value, best accuracy)]}. With
    difficulty_at=S the knob is the difficulty of problems of size S (from 1, doubling), not the size. The scan
    stops before a value whose run would cost more than max_cost (the caller's cap, e.g. `--max-cost`)."""
    lo_acc, hi_acc = band
    scanned: list[tuple[int, float]] = []

    def best_at(v: int) -> float:
        x, y = draw(task, v, n, seed) if difficulty_at is None else draw(task, difficulty_at, n, seed, v)
        acc = max(evaluate(model, task, x, y, iters, settings=settings, precision=precision).accuracy)
        scanned.append((v, float(acc)))
        if on_size is not None:
            on_size(v, float(acc))
        return float(acc)

    def fits(v: int) -> bool:
        size = v if difficulty_at is None else difficulty_at
        return run_cost(task, size, n, iters, model.config.width) <= max_cost

    if difficulty_at is None:
        top = task.sizes.hi
        snap = lambda v: _snap(task, v)  # noqa: E731
    else:
        top = task.difficulty_range(difficulty_at)[1]
        snap = lambda v: int(min(max(v, 1), top))  # noqa: E731
    above = None  # the largest value measured above the band
    v = snap(start)
    for _ in range(max_steps):
        if not fits(v):
            break
        acc = best_at(v)
        if lo_acc <= acc <= hi_acc:
            return {"value": v, "best_accuracy": acc, "in_band": True, "scanned": scanned}
        if acc > hi_acc:
            above = v
            if v >= top:
                break
            v = snap(v * 2)
            continue
        # below the band: bisect between the last value above it and this one
        low, high = (above if above is not None else snap(start)), v
        for _ in range(max_steps):
            mid = snap((low + high) // 2)
            if mid in (low, high):
                break
            acc = best_at(mid)
            if lo_acc <= acc <= hi_acc:
                return {"value": mid, "best_accuracy": acc, "in_band": True, "scanned": scanned}
            low, high = (mid, high) if acc > hi_acc else (low, mid)
        break
    # nothing in the band: the value whose accuracy is closest to it
    v, acc = min(scanned, key=lambda p: min(abs(p[1] - lo_acc), abs(p[1] - hi_acc))) if scanned else (start, np.nan)
    return {"value": v, "best_accuracy": acc, "in_band": False, "scanned": scanned}
