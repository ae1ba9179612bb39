"""What the report runs: its configuration, the sizes per task, each run's problems and budget under the cost cap."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks import get_task, optional
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.limits import REPORT_RUN_COST, REPORT_RUN_COST_QUICK, run_cost
from ttc.engine.probe import MAX_ITERS
from ttc.engine.zoo import scaled_size

FORMATS = ("png", "svg", "html")


@dataclass(frozen=True)
class ReportConfig:
    quick: bool
    curve_factors: tuple[int, ...]  # sizes of the accuracy-vs-iterations figures, x the training size
    scaling_factors: tuple[int, ...]  # sizes of the iterations-needed-vs-size study
    n_base: int  # problems at the training size (and wherever the cost allows)
    n_min: int  # the floor when the cost cap cuts problems
    cost_cap: float  # cost of one run (engine.limits.run_cost units), a fraction of the one cap MAX_COST
    iter_cap: int  # iteration budget cap
    base_budget: int  # budget at the training size, in multiples of the training iterations
    memory_iters: tuple[int, ...]
    analysis_starts: int = 5  # initial states of the path-independence / breadth analysis per looped checkpoint
    analysis_n: int = 100  # its problems (fewer where the cost cap says so)
    precision: str = "auto"  # --precision: auto (per checkpoint: its card may prefer fp32), fp32 or bf16


def report_config(quick: bool = False) -> ReportConfig:
    if quick:
        return ReportConfig(quick=True, curve_factors=(1, 4), scaling_factors=(1, 2, 4), n_base=32, n_min=8,
                            cost_cap=REPORT_RUN_COST_QUICK, iter_cap=120, base_budget=2, memory_iters=(10, 100),
                            analysis_starts=3, analysis_n=16)
    return ReportConfig(quick=False, curve_factors=(1, 4, 16), scaling_factors=(1, 2, 4, 8, 16), n_base=200,
                        n_min=20, cost_cap=REPORT_RUN_COST, iter_cap=1500, base_budget=4, memory_iters=(10, 100, 1000))


def iteration_cost(ck: Checkpoint, size: int) -> float:
    """One iteration on one problem, in the one cost model (engine.limits.run_cost)."""
    return run_cost(get_task(ck.task), size, 1, 1, ck.config.width)


@dataclass
class Run:
    """One planned run: a checkpoint on n problems of a size with an iteration budget."""

    size: int
    factor: int  # the size as a multiple of the training size (the nominal one when the size was capped)
    n: int
    budget: int
    note: str = ""


def report_sizes(task: str, base: int, factors: Sequence[int]) -> dict[int, int]:
    """factor -> the size run for it: base x factor, or, for a task that lists its own sizes (`size_ladder`: sudoku's
    blank counts are not a scale), the base and then the ladder's harder sizes in order (the factors then rank the
    sizes: 2 the next harder one, 4 the one after)."""
    ladder = optional(get_task(task), "size_ladder")
    if not ladder:
        return {f: scaled_size(task, base, f) for f in factors}
    harder = [s for s in sorted(ladder) if s > base]
    out = {}
    for i, f in enumerate(sorted(factors)):
        out[f] = base if i == 0 else harder[min(i - 1, len(harder) - 1)] if harder else base
    return out


def plan_run(ck: Checkpoint, base: int, factor: int, budget_at: Callable[[int], int], cfg: ReportConfig,
             size: int | None = None) -> Run:
    """The largest size up to `size` (default base x factor) whose run (budget_at(size) iterations) fits the cost
    cap with at least n_min problems, and as many problems (up to n_base) as the cap allows."""
    want = size or scaled_size(ck.task, base, factor)
    size = want
    while size > base and cfg.n_min * budget_at(size) * iteration_cost(ck, size) > cfg.cost_cap:
        smaller = scaled_size(ck.task, size, 0.8)
        size = smaller if smaller < size else base
    budget = budget_at(size)
    n = int(min(cfg.n_base, max(cfg.n_min, cfg.cost_cap // max(1.0, budget * iteration_cost(ck, size)))))
    note = ""
    if size != want:
        note = (f"size {want} ({factor}x) would cost more than the cap ({cfg.cost_cap:.2g} problems x cells x "
                f"iterations x width^2 "
                f"with {cfg.n_min} problems); ran size {size}, the largest that fits")
    return Run(size=size, factor=factor, n=n, budget=budget, note=note)


def growth(done: list[tuple[int, int]]) -> float:
    """The exponent p of needed iterations ~ size^p from the last two solved sizes (size, iterations), clamped
    to [1, 2] (at least linear, at most quadratic); 1 with fewer than two."""
    if len(done) < 2:
        return 1.0
    (s1, k1), (s2, k2) = done[-2], done[-1]
    if s2 == s1:
        return 1.0
    return float(min(2.0, max(1.0, math.log(max(k2, 1) / max(k1, 1)) / math.log(s2 / s1))))


def looped_budget(ck: Checkpoint, size: int, done: list[tuple[int, int]], cfg: ReportConfig) -> int:
    """Budget at a size. Before any size is solved: base_budget x the training iterations. Then 3x the
    iterations the last solved size needed, grown to this size at the observed rate (`growth`), at least twice
    the training iterations; never above the cap."""
    layers = ck.config.layers
    if not done:
        want = cfg.base_budget * layers
    else:
        s_last, k_last = done[-1]
        want = max(2 * layers, math.ceil(3 * k_last * (size / s_last) ** growth(done)))
    return int(min(cfg.iter_cap, MAX_ITERS, want))


def looped(ck: Checkpoint) -> bool:
    return not ck.model.fixed_depth
