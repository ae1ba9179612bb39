"""Groups `overhead` (probe() against a bare loop) and `allocator` (glibc's default allocator against the tuned one,
each in fresh processes: ttc/tools/bench/allocator_child.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from tasks import get_task
from ttc.engine import runtime
from ttc.engine.checkpoint import Checkpoint
from ttc.tools.bench.common import (
    OVERHEAD_PAIRS_MAX,
    BenchConfig,
    _dashboard_rank,
    _paired,
    _timed,
    entry,
    explore_default_run,
    spread,
)


def bench_overhead(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """probe() (per-iteration accuracy, residuals, convergence, predictions to the host) vs a bare loop over
    model.stream on the same model, problems and budget: the Explore page's default run."""
    size = get_task(ck.task).dashboard_size
    iters = cfg.overhead_iters
    bare, instrumented = explore_default_run(ck.model.to(dev).eval(), ck.task, cfg.n, iters, dev)
    # a cheap model's run lasts tens of milliseconds, where a busy machine's hiccups are of the same size: it
    # gets as many pairs as fit in overhead_seconds (at least `repeats`, at most OVERHEAD_PAIRS_MAX)
    pair_s = _timed(bare, dev)[0] + _timed(instrumented, dev)[0]
    pairs = int(min(OVERHEAD_PAIRS_MAX, max(cfg.repeats, cfg.overhead_seconds // max(pair_s, 1e-9))))
    pairs += 1 - pairs % 2  # odd: each order (bare first, probe first) the same number of times but one
    t = _paired(bare, instrumented, pairs, dev)
    return entry("overhead", f"probe overhead: {ck.name}",
                 "wall time of probe() / wall time of a bare loop over model.stream, same model, problems and "
                 "budget", t["wall"], aim="<= 1.10",
                 cpu_ratio=spread(t["cpu"]) if t["cpu"] else None,
                 bare_seconds=spread(t["a_seconds"]), probe_seconds=spread(t["b_seconds"]),
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "n": cfg.n, "iters": iters,
                        "device": dev.type})


def allocator_checkpoints(cks: list[Checkpoint]) -> list[Checkpoint]:
    """One checkpoint per task for the allocator group: the one the dashboard opens on for that task."""
    out: dict[str, Checkpoint] = {}
    for ck in sorted(cks, key=_dashboard_rank):
        out.setdefault(ck.task, ck)
    return list(out.values())


def bench_allocator(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """glibc's default allocator / tune_allocator()'s, wall time of the Explore page's default run (bare loop and
    probe), each side in its own fresh process (an allocator is set for a whole process), the two alternating."""
    if dev.type != "cpu" or not ck.path:
        return entry("allocator", f"allocator: {ck.name}", "default / tuned allocator", None,
                     skipped="measured on the CPU only (a GPU's memory has its own caching allocator)")
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    root = str(runtime.project_root())
    env["PYTHONPATH"] = os.pathsep.join([root, *sys.path])  # the child imports what this process imports
    args = [ck.path, str(cfg.n), str(cfg.overhead_iters), str(cfg.allocator_runs), str(torch.get_num_threads())]
    got: dict[str, list[dict]] = {"0": [], "1": []}
    for r in range(cfg.allocator_pairs):
        for mode in ("0", "1") if r % 2 == 0 else ("1", "0"):
            res = subprocess.run([sys.executable, "-m", "ttc.tools.bench.allocator_child", *args],
                                 env={**env, "TTC_MALLOC": mode}, capture_output=True, text=True, timeout=600,
                                 cwd=root)
            if res.returncode != 0:
                raise RuntimeError(f"allocator child ({ck.name}, TTC_MALLOC={mode}) failed: "
                                   f"{res.stderr.strip().splitlines()[-1:] or res.returncode}")
            got[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
    default, tuned = got["0"], got["1"]
    return entry("allocator", f"allocator: {ck.name}", "wall time with glibc's default allocator / with "
                 "tune_allocator()'s, bare loop over model.stream (each pair: two fresh processes)",
                 [d["bare"] / t["bare"] for d, t in zip(default, tuned, strict=True)],
                 probe_ratio=spread([d["probe"] / t["probe"] for d, t in zip(default, tuned, strict=True)]),
                 overhead_default=spread([d["probe"] / d["bare"] for d in default]),
                 overhead_tuned=spread([t["probe"] / t["bare"] for t in tuned]),
                 bare_seconds={"default": spread([d["bare"] for d in default]),
                               "tuned": spread([t["bare"] for t in tuned])},
                 tuned_as=tuned[0]["allocator"],
                 setup={"checkpoint": ck.name, "task": ck.task, "size": get_task(ck.task).dashboard_size, "n": cfg.n,
                        "iters": cfg.overhead_iters, "runs_per_process": cfg.allocator_runs})

