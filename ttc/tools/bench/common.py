"""What every bench group shares: its configuration, entries as ratios with their spread, paired timing, problems."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models import IterativeModel
from tasks import TASKS, get_task, tensors
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.probe import probe

GROUPS = ("overhead", "allocator", "solvers", "torchdeq", "memory", "throughput", "stop", "dashboard", "precision")
SEED = 20_240_601  # problems of repeat r use seed SEED + r
TORCHDEQ_OPTS = {"m": 5, "lam": 1e-4}  # same history and regularisation on both sides


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    repeats: int  # timed pairs per wall-time ratio
    n: int  # problems per batch (overhead, throughput)
    overhead_iters: int  # iterations per timed overhead run
    overhead_seconds: float  # time the overhead pairs of one checkpoint may take (more pairs for cheap models)
    allocator_pairs: int  # pairs of fresh processes (default allocator, tuned) per allocator entry
    allocator_runs: int  # timed runs per process
    solver_n: int  # problems per DEQ solve (solvers, torchdeq)
    solver_repeats: int  # problem batches for the NFE ratios
    max_iter: int  # solver cap when counting NFE to tol
    tol: float  # solver tolerance (relative)
    memory_batch: int
    memory_repeats: int
    throughput_iters: int
    dashboard_repeats: int
    dashboard_n: int
    dashboard_budget: int
    max_checkpoints: int  # per group that loops over checkpoints (0: all)


def bench_config(quick: bool = False) -> BenchConfig:
    if quick:  # CI: under a minute on two busy cores
        return BenchConfig(quick=True, repeats=5, n=16, overhead_iters=12, overhead_seconds=0.0, allocator_pairs=1,
                           allocator_runs=3, solver_n=16, solver_repeats=2, max_iter=60, tol=1e-4, memory_batch=2,
                           memory_repeats=1, throughput_iters=6, dashboard_repeats=2, dashboard_n=8,
                           dashboard_budget=6, max_checkpoints=1)
    return BenchConfig(quick=False, repeats=11, n=100, overhead_iters=30, overhead_seconds=4.0, allocator_pairs=3,
                       allocator_runs=7, solver_n=32, solver_repeats=3, max_iter=300, tol=1e-4, memory_batch=4,
                       memory_repeats=2, throughput_iters=20, dashboard_repeats=5, dashboard_n=100,
                       dashboard_budget=30, max_checkpoints=0)


OVERHEAD_PAIRS_MAX = 61
# groups whose ratios are timings
TIMED_GROUPS = ("overhead", "allocator", "throughput", "stop", "dashboard", "precision")
DISAGREE = 2.0  # an entry whose repeated ratios span more than this factor is flagged as not to be trusted


def spread(values: list[float]) -> dict:
    """{min, median, max, repeats} of measured values."""
    v = [float(x) for x in values]
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "repeats": len(v)}


def entry(group: str, name: str, compares: str, ratios: list[float] | None, aim: str | None = None,
          timed: bool | None = None, **extra) -> dict:
    """One benchmark result: what it compares, the ratio's spread, the aim and whether the median meets it.
    timed: the ratios are timings (default: the group's are), which a busy machine can make disagree."""
    timed = group in TIMED_GROUPS if timed is None else timed
    out = {"group": group, "name": name, "compares": compares, "ratio": spread(ratios) if ratios else None,
           "aim": aim}
    if ratios and timed:
        r = out["ratio"]
        # timings that disagree by more than DISAGREE x (max / min) say the machine was busy, not the code;
        # counts (function evaluations, bytes) differ between repeats only because their problems do
        out["trusted"] = bool(r["min"] > 0 and r["max"] / r["min"] <= DISAGREE)
    if aim and ratios:
        op, val = aim.split()
        med = out["ratio"]["median"]
        out["meets_aim"] = bool(med <= float(val) + 1e-12) if op == "<=" else bool(med >= float(val) - 1e-12)
    out.update(extra)
    return out


def skipped(group: str, name: str, compares: str, why: str) -> dict:
    return {"group": group, "name": name, "compares": compares, "ratio": None, "aim": None, "skipped": why}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], object], dev: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn(); the CPU seconds of every thread of the process (torch's own, the probe's
    worker), so work moved off the calling thread still counts."""
    _sync(dev)
    w, c = time.perf_counter(), time.process_time()
    fn()
    _sync(dev)
    return time.perf_counter() - w, time.process_time() - c


def _paired(a: Callable[[], object], b: Callable[[], object], repeats: int, dev: torch.device) -> dict:
    """Time a and b alternately (order flipped every repeat, one warm-up each): per-repeat ratios b / a."""
    a(), b()
    wa, wb, ca, cb = [], [], [], []
    for r in range(repeats):
        first, second = (a, b) if r % 2 == 0 else (b, a)
        t1, t2 = _timed(first, dev), _timed(second, dev)
        (ta, tb) = (t1, t2) if r % 2 == 0 else (t2, t1)
        wa.append(ta[0])
        wb.append(tb[0])
        ca.append(ta[1])
        cb.append(tb[1])
    return {"wall": [y / x for x, y in zip(wa, wb, strict=True)],
            "cpu": [y / x for x, y in zip(ca, cb, strict=True) if x > 0 and y > 0],
            "a_seconds": wa, "b_seconds": wb}


def _batch(task_name: str, size: int, n: int, seed: int, dev: torch.device):
    task = get_task(task_name)
    xs, ys = task.generate(size, n, seed)
    return task, xs, ys, *tensors(task, xs, ys, dev)


def _limit(items: list, cfg: BenchConfig) -> list:
    return items[: cfg.max_checkpoints] if cfg.max_checkpoints else items


def explore_default_run(model: IterativeModel, task_name: str, n: int, iters: int,
                        dev: torch.device) -> tuple[Callable[[], None], Callable[[], None]]:
    """The Explore page's default run (n problems of the task's dashboard size) as two functions: a bare loop over
    model.stream, in the grad mode probe uses (inference mode unless the family's inference takes gradients), and
    probe() on the same model, problems and budget."""
    task, xs, ys, x, _ = _batch(task_name, get_task(task_name).dashboard_size, n, SEED, dev)

    def bare():
        with contextlib.nullcontext() if model.needs_grad else torch.inference_mode():
            for _ in model.stream(x, iters):
                pass

    def instrumented():
        for _ in probe(model, task, xs, ys, iters, device=dev):
            pass

    return bare, instrumented


def _probe_run(model, task_name: str, size: int, n: int, iters: int, dev: torch.device,
               settings=None) -> Callable[[], int]:
    """A function running probe() over n problems of this size; it returns the records it got."""
    task, xs, ys, *_ = _batch(task_name, size, n, SEED, dev)
    return lambda: sum(1 for _ in probe(model, task, xs, ys, iters, device=dev, settings=settings))


def _family_rank(c: Checkpoint) -> tuple:
    """Looped families before the fixed-depth baseline, solver-free before solver-based, then display order."""
    m = c.model
    return (m.fixed_depth, m.has_solver, m.order, c.name)


def _dashboard_rank(c: Checkpoint) -> tuple:
    return (list(TASKS).index(c.task) if c.task in TASKS else 99, c.arch != get_task(c.task).default_arch,
            *_family_rank(c)[:3], len(c.name))

