"""Caps on what one run, one training step or one upload may cost: one definition for the CLI and the dashboard.

A run's cost is estimated before any work starts, as a coarse multiply-accumulate count: problems x output
cells x iterations x width^2. This is the one cost model: the CLI, the dashboard, training and the report's
planning all use `run_cost`, against the one cap MAX_COST (the report plans within fixed fractions of it).
The command line refuses a run above MAX_COST, naming the cap and the options that lower the cost; the
dashboard keeps one live iteration over its whole batch under LIVE_ITER_COST by taking fewer problems, and
says so. The README's "Reliability" section states these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ttc.engine.checkpoint import MAX_FILE_BYTES
from ttc.engine.probe import MAX_ITERS

MAX_COST = 2e12  # one `python -m ttc eval` or `memory` run, or one training step: minutes on a laptop CPU at most
# the report plans each of its runs within a fraction of the cap, so the whole report takes minutes
REPORT_RUN_COST = MAX_COST / 20
REPORT_RUN_COST_QUICK = MAX_COST / 2000
LIVE_ITER_COST = 2.5e8  # one dashboard iteration over the batch: well under a second on a laptop CPU
LIVE_BUDGET_MAX = 1000  # iterations of one dashboard run, so one run costs at most LIVE_ITER_COST x this
MAX_UPLOAD_BYTES = MAX_FILE_BYTES  # an uploaded checkpoint, as any checkpoint file (64 MiB)
MAX_SESSION_UPLOADS = 8  # uploaded checkpoints one dashboard session holds at once (only in that session)

# TrainConfig field -> accepted range (inclusive; floats bounded on the open side where noted in TRAIN_OPEN)
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "batch": (1, 4096),
    "steps": (1, 10_000_000),
    "time_budget": (0, 30 * 24 * 3600),
    "stop_after": (0, 10_000_000),
    "lr": (0, 10),
    "warmup": (0, 10_000_000),
    "weight_decay": (0, 10),
    "clip": (0, 1e6),
    "alpha": (0, 1),
    "prefix_max": (0, 5000),
    "init_noise": (0, 100),
    "ema": (0, 0.99999),
    "seed": (0, 2**63 - 1),
    "val_size": (0, 1_000_000),
    "val_iters": (0, 5000),
    "val_every": (1, 10_000_000),
    "val_n": (1, 100_000),
    "eval_n": (1, 100_000),
    "eval_seed": (0, 2**63 - 1),
    "threads": (0, 256),
}
TRAIN_OPEN = {"lr"}  # ranges open at the low end: 0 itself is refused


class CostError(ValueError):
    """A run or training step whose estimated cost is above its cap; the message says how to lower it."""


def run_cost(task, size: int, n: int, iters: int, width: int) -> float:
    """Problems x output cells x iterations x width^2 of running n problems of task at size for iters."""
    cells = int(np.prod(task.target_shape(size)))
    return float(n) * cells * iters * width * width


def check_cost(cost: float, lower: str, cap: float = MAX_COST, what: str = "run") -> float:
    """Raise CostError when cost is above cap, naming the cap and what lowers the cost; return cost."""
    if not cost <= cap:
        raise CostError(f"{what} cost {cost:.2g} exceeds the cap {cap:.2g} (problems x cells x iterations x "
                        f"width^2); lower {lower}")
    return cost


def live_max_n(task, size: int, width: int, n_max: int) -> int:
    """The most problems (at least 1, at most n_max) whose live iteration stays under LIVE_ITER_COST."""
    per = run_cost(task, size, 1, 1, width)
    return int(max(1, min(n_max, LIVE_ITER_COST // per)))


def check_train(values: Mapping[str, object]) -> None:
    """Refuse TrainConfig values out of range (ValueError naming the option, its value and the range)."""
    for name, (lo, hi) in TRAIN_RANGES.items():
        if name not in values:
            continue
        v = values[name]
        flag = "--" + name.replace("_", "-")
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
        if ok and name in TRAIN_OPEN:
            ok = v > lo
        if not ok:
            lo_, hi_ = (int(x) if float(x).is_integer() else x for x in (lo, hi))
            rng = f"({lo_}, {hi_}]" if name in TRAIN_OPEN else f"{lo_}..{hi_}"
            raise ValueError(f"{flag} must be in {rng}, got {v!r}")
    bad = [b for b in values.get("eval_iters") or [] if not 1 <= b <= MAX_ITERS]
    if bad:
        raise ValueError(f"--eval-iters values must be in 1..{MAX_ITERS}, got {bad[0]}")


def check_train_cost(task, sizes: list[int], batch: int, layers: int, width: int, val_size: int, val_iters: int,
                     val_n: int) -> None:
    """Refuse a training step (batch x largest size x layers) or a validation pass above MAX_COST."""
    check_cost(run_cost(task, max(sizes), batch, layers, width), "--batch, --sizes, --layers or --width",
               what="training step")
    check_cost(run_cost(task, val_size, val_n, val_iters, width), "--val-n, --val-size or --val-iters",
               what="validation")
