"""Benchmarks (`python -m ttc bench`): what instrumentation, solvers, backward modes, problem size and the
dashboard cost, measured side by side in one process.

Every entry names what it compares and gives the ratio's min / median / max over repeats: both sides run
interleaved on the same machine, so a busy or slow machine moves them alike, and the absolute numbers
(seconds, bytes, iterations per second) come alongside. Problems come from explicit seeds. With no DEQ
checkpoint in the folder, the DEQ entries run on a randomly initialised DEQ of the zoo's prefix-sums
shape and say so.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models import IterativeModel, ModelConfig, build_model, solvers
from models import precision as prec
from tasks import TASKS, get_task
from ttc.engine import runtime
from ttc.engine.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint
from ttc.engine.memory import measure_step
from ttc.engine.probe import probe, resolve_device

GROUPS = ("overhead", "allocator", "solvers", "torchdeq", "memory", "throughput", "stop", "dashboard", "precision")
SEED = 20_240_601  # problems of repeat r use seed SEED + r
RANDOM_DEQ = {"task": "prefix_sums", "family": "deq", "arch": "conv1d", "width": 64, "depth": 2, "layers": 30,
              "norm": True}  # the zoo's prefix-sums DEQ shape
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


# --- small helpers ---------------------------------------------------------------------------------------

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


def training_size(ck: Checkpoint) -> int:
    """The largest size the checkpoint trained on (its card), else the zoo's default for the task."""
    return max(ck.train_sizes, default=get_task(ck.task).train_size)


def scaled_size(task: str, size: int, factor: float) -> int:
    """size x factor, clamped into the task's range (odd for mazes)."""
    r = get_task(task).sizes
    v = min(max(int(round(size * factor)), r.lo), r.hi)
    if r.odd_only and v % 2 == 0:
        v = v + 1 if v + 1 <= r.hi else v - 1
    return v


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


def machine(dev: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = runtime.cpu_name()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
           "device": dev.type, "load_average": load, "allocator": runtime.allocator}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


# --- the zoo -------------------------------------------------------------------------------------------------

@dataclass
class DEQCase:
    """A DEQ to benchmark: a checkpoint's model, or a random one standing in when the folder has none."""

    name: str
    model: IterativeModel
    task: str
    size: int
    random: bool = False


def load_zoo(folder: str | Path) -> tuple[list[Checkpoint], list[str]]:
    """The folder's valid checkpoints and a note per file that failed validation."""
    cks, notes = [], []
    for p in list_checkpoints(folder):
        try:
            cks.append(load_checkpoint(p))
        except (CheckpointError, ValueError, OSError) as e:
            notes.append(f"{p.name} skipped: {e}")
    return cks, notes


def deq_cases(cks: list[Checkpoint], uses: str = "the DEQ measurements (solvers, torchdeq, memory) use"
              ) -> tuple[list[DEQCase], list[str]]:
    cases = [DEQCase(ck.name, ck.model, ck.task, training_size(ck)) for ck in cks if ck.model.has_solver]
    if cases:
        return cases, []
    spec = dict(RANDOM_DEQ)
    task = get_task(spec.pop("task"))
    model = build_model(ModelConfig(in_channels=task.in_channels, **spec), seed=0)
    name = "random-prefix_sums-deq"
    note = (f"no DEQ checkpoint: {uses} {name}, a randomly "
            f"initialised DEQ of the zoo's prefix-sums shape (conv1d, width 64, depth 2, group norm, seed 0); "
            f"untrained, it is not contractive, so few samples reach the tolerance")
    return [DEQCase(name, model, task.name, task.train_size, random=True)], [note]


def _batch(task_name: str, size: int, n: int, seed: int, dev: torch.device):
    task = get_task(task_name)
    xs, ys = task.generate(size, n, seed)
    return task, xs, ys, task.encode(torch.as_tensor(xs)).to(dev), torch.as_tensor(ys).long().to(dev)


def _limit(items: list, cfg: BenchConfig) -> list:
    return items[: cfg.max_checkpoints] if cfg.max_checkpoints else items


# --- the groups ----------------------------------------------------------------------------------------------

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



# one child process: the allocator as $TTC_MALLOC says, then median seconds of the bare loop and of probe()
_ALLOCATOR_CHILD = """
import json, statistics, sys, time
import torch
from ttc.engine.runtime import tune_allocator
how = tune_allocator()
from ttc.engine.checkpoint import load_checkpoint
from ttc.tools.bench import explore_default_run
path, n, iters, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
ck = load_checkpoint(path)
bare, probed = explore_default_run(ck.model.eval(), ck.task, n, iters, torch.device("cpu"))
out = {"allocator": how}
for name, fn in (("bare", bare), ("probe", probed)):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


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
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    args = [ck.path, str(cfg.n), str(cfg.overhead_iters), str(cfg.allocator_runs), str(torch.get_num_threads())]
    got: dict[str, list[dict]] = {"0": [], "1": []}
    for r in range(cfg.allocator_pairs):
        for mode in ("0", "1") if r % 2 == 0 else ("1", "0"):
            res = subprocess.run([sys.executable, "-c", _ALLOCATOR_CHILD, *args], env={**env, "TTC_MALLOC": mode},
                                 capture_output=True, text=True, timeout=600, cwd=root)
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

def _f_of(case: DEQCase, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return case.model.fixed_point_map(x)[0]


def bench_solvers(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> dict:
    """Anderson vs fixed-point iteration: batch NFE until every sample reaches rel tol (or the cap)."""
    model = case.model.to(dev).eval()
    ratios, rows = [], []
    for r in range(cfg.solver_repeats):
        *_, x, _ = _batch(case.task, case.size, cfg.solver_n, SEED + r, dev)
        with torch.no_grad():
            f = _f_of(case, x)
            z0 = model.fixed_point_map(x)[1]
            row = {}
            for method in ("anderson", "fixed_point"):
                t0 = time.perf_counter()
                _, st = solvers.solve(f, z0, method, tol=cfg.tol, max_iter=cfg.max_iter)
                conv = st.converged
                row[method] = {"nfe": st.nfe, "converged": float(conv.float().mean()),
                               "mean_stop_step_converged": float(st.stop_step[conv].float().mean())
                               if bool(conv.any()) else None, "seconds": time.perf_counter() - t0}
        rows.append(row)
        ratios.append(row["anderson"]["nfe"] / row["fixed_point"]["nfe"])
    capped = any(row["fixed_point"]["converged"] < 1 for row in rows)
    return entry("solvers", f"Anderson vs fixed point: {case.name}",
                 f"batch NFE of Anderson / batch NFE of fixed-point iteration to rel tol {cfg.tol:g} (cap "
                 f"{cfg.max_iter} steps), same f and problems; repeats draw new problems", ratios, aim="<= 0.5",
                 runs=rows, random_model=case.random,
                 note=(f"fixed-point iteration hit the {cfg.max_iter}-step cap on some samples: its NFE is a lower "
                       "bound, so the ratio is an upper bound") if capped else None,
                 setup={"model": case.name, "task": case.task, "size": case.size, "n": cfg.solver_n,
                        "tol": cfg.tol, "max_iter": cfg.max_iter, "device": dev.type})


def bench_torchdeq(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> list[dict]:
    """This project's Anderson vs torchdeq 0.1.0's on the same f, z0, history m, lam, tol and cap."""
    compares_nfe = ("function evaluations of our Anderson / torchdeq 0.1.0's Anderson on the same f and z0 "
                    f"(m={TORCHDEQ_OPTS['m']}, lam={TORCHDEQ_OPTS['lam']:g}, rel tol {cfg.tol:g}, cap {cfg.max_iter})")
    compares_time = "wall time per solve call of our Anderson / torchdeq 0.1.0's, same setting, interleaved"
    try:
        from torchdeq.solver import get_solver
    except ImportError:
        why = "torchdeq is not installed (pip install torchdeq==0.1.0)"
        return [skipped("torchdeq", f"Anderson NFE vs torchdeq: {case.name}", compares_nfe, why),
                skipped("torchdeq", f"Anderson time vs torchdeq: {case.name}", compares_time, why)]
    td = get_solver("anderson")
    model = case.model.to(dev).eval()
    *_, x, _ = _batch(case.task, case.size, cfg.solver_n, SEED, dev)
    calls: dict[str, int] = {}
    out: dict[str, object] = {}
    with torch.no_grad():
        f = _f_of(case, x)
        z0 = model.fixed_point_map(x)[1]

        def ours():
            c = solvers.Counted(f)
            z, st = solvers.solve(c, z0, "anderson", tol=cfg.tol, max_iter=cfg.max_iter, **TORCHDEQ_OPTS)
            calls["ours"], out["ours"] = c.calls, (z, float(st.converged.float().mean()))

        def theirs():
            c = solvers.Counted(f)
            z, _, info = td(c, z0, max_iter=cfg.max_iter, tol=cfg.tol, stop_mode="rel", **TORCHDEQ_OPTS)
            calls["torchdeq"] = c.calls
            out["torchdeq"] = (z, float((info["rel_lowest"] < cfg.tol).float().mean()))

        t = _paired(theirs, ours, max(3, cfg.repeats // 2), dev)
    z_ours, conv_ours = out["ours"]
    z_td, conv_td = out["torchdeq"]
    diff = float((z_ours - z_td).norm() / (z_td.norm() + 1e-12))
    setup = {"model": case.name, "task": case.task, "size": case.size, "n": cfg.solver_n, "tol": cfg.tol,
             "max_iter": cfg.max_iter, **TORCHDEQ_OPTS, "device": dev.type}
    common = {"random_model": case.random, "setup": setup,
              "converged": {"ours": conv_ours, "torchdeq": conv_td}, "fixed_points_rel_diff": diff,
              "note": "torchdeq stops the whole batch at once; ours freezes each sample at its own tolerance"}
    return [
        entry("torchdeq", f"Anderson NFE vs torchdeq: {case.name}", compares_nfe,
              [calls["ours"] / calls["torchdeq"]],
              nfe={"ours": calls["ours"], "torchdeq": calls["torchdeq"]}, **common),
        entry("torchdeq", f"Anderson time vs torchdeq: {case.name}", compares_time, t["wall"], timed=True,
              cpu_ratio=spread(t["cpu"]) if t["cpu"] else None,
              seconds={"ours": spread(t["b_seconds"]), "torchdeq": spread(t["a_seconds"])}, **common),
    ]


def bench_memory(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> list[dict]:
    """Bytes autograd saves in one training step: implicit at 1000 vs 10 forward iterations, unrolled vs
    implicit at 100 (and the CUDA peaks on a GPU). Forward solves run exactly the iteration count (tol 0)."""
    model = copy.deepcopy(case.model).to(dev)
    model.settings = model.settings.updated(backward_solver={"max_iter": 30})  # the implicit backward's own solve
    rows: dict[tuple[str, int], list[dict]] = {}
    size = min(case.size, 32)
    for r in range(cfg.memory_repeats):
        *_, x, y = _batch(case.task, size, cfg.memory_batch, SEED + r, dev)
        for mode, k in (("implicit", 10), ("implicit", 1000), ("implicit", 100), ("unrolled", 100)):
            rows.setdefault((mode, k), []).append(measure_step(model, x, y, mode, k, tol=0.0))
    setup = {"model": case.name, "task": case.task, "size": size, "batch": cfg.memory_batch, "device": dev.type,
             "forward_tol": 0.0, "backward_max_iter": 30}

    def ratio(num: tuple[str, int], den: tuple[str, int], key: str) -> list[float]:
        return [a[key] / b[key] for a, b in zip(rows[num], rows[den], strict=True) if a[key] and b[key]]

    def saved(key: str) -> dict:
        return {f"{m}@{k}": rs[0][key] for (m, k), rs in rows.items()}

    out = [
        entry("memory", f"implicit memory vs iterations: {case.name}",
              "bytes saved for backward by an implicit-differentiation step at 1000 forward iterations / at 10",
              ratio(("implicit", 1000), ("implicit", 10), "saved_bytes"), aim="<= 1.00",
              saved_bytes=saved("saved_bytes"), random_model=case.random, setup=setup),
        entry("memory", f"unrolled vs implicit at 100 iterations: {case.name}",
              "bytes saved for backward by unrolled backprop through 100 solver steps / by implicit "
              "differentiation at 100", ratio(("unrolled", 100), ("implicit", 100), "saved_bytes"), aim=">= 20",
              saved_bytes=saved("saved_bytes"), random_model=case.random, setup=setup),
    ]
    if dev.type == "cuda":
        out += [
            entry("memory", f"implicit CUDA peak vs iterations: {case.name}",
                  "CUDA peak allocated above baseline, implicit step at 1000 forward iterations / at 10",
                  ratio(("implicit", 1000), ("implicit", 10), "peak_bytes"), aim="<= 1.00",
                  peak_bytes=saved("peak_bytes"), random_model=case.random, setup=setup),
            entry("memory", f"unrolled vs implicit CUDA peak at 100: {case.name}",
                  "CUDA peak allocated above baseline, unrolled / implicit at 100 iterations",
                  ratio(("unrolled", 100), ("implicit", 100), "peak_bytes"), aim=">= 20",
                  peak_bytes=saved("peak_bytes"), random_model=case.random, setup=setup),
        ]
    return out


def bench_descent_memory(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Training memory of a family whose memory modes include unrolled but no solver (an EBM): bytes saved when
    training through all of T descent steps / through the last step only, at T = its training steps."""
    model = copy.deepcopy(ck.model).to(dev)
    others = [m for m in model.memory_modes if m != "unrolled"]
    size = min(training_size(ck), 32)
    k = ck.config.layers
    ratios, rows = [], []
    for r in range(cfg.memory_repeats):
        *_, x, y = _batch(ck.task, size, cfg.memory_batch, SEED + r, dev)
        un, other = measure_step(model, x, y, "unrolled", k), measure_step(model, x, y, others[0], k)
        rows.append({"unrolled": un["saved_bytes"], others[0]: other["saved_bytes"]})
        if other["saved_bytes"]:
            ratios.append(un["saved_bytes"] / other["saved_bytes"])
    return entry("memory", f"unrolled vs {others[0]} at {k} steps: {ck.name}",
                 f"bytes saved for backward by training through all {k} steps / through the {others[0]} mode "
                 f"at {k}", ratios, aim=">= 5", saved_bytes=rows[0],
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "batch": cfg.memory_batch,
                        "iters": k, "device": dev.type})


def _probe_run(model, task_name: str, size: int, n: int, iters: int, dev: torch.device,
               settings=None) -> Callable[[], int]:
    """A function running probe() over n problems of this size; it returns the records it got."""
    task, xs, ys, *_ = _batch(task_name, size, n, SEED, dev)
    return lambda: sum(1 for _ in probe(model, task, xs, ys, iters, device=dev, settings=settings))


def bench_throughput(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Iterations per second of an instrumented run at the training size and at 4x (DEQs: every iteration a
    real solver step, tol 0). The ratio is 4x / training size."""
    base = training_size(ck)
    big = scaled_size(ck.task, base, 4)
    iters = cfg.throughput_iters
    settings = ck.model.settings.run_to_budget()
    model = ck.model.to(dev).eval()
    per_size: dict[int, list[float]] = {base: [], big: []}
    runs = {size: _probe_run(model, ck.task, size, cfg.n, iters, dev, settings) for size in (base, big)}
    done = {size: run() for size, run in runs.items()}  # warm-up; explicit models yield their depth
    for _ in range(max(3, cfg.repeats // 3)):
        for size in (base, big):
            w, _ = _timed(runs[size], dev)
            per_size[size].append(done[size] / w)
    ratios = [b / a for a, b in zip(per_size[base], per_size[big], strict=True)]
    return entry("throughput", f"throughput: {ck.name}",
                 f"iterations per second at 4x the training size ({big}) / at the training size ({base}), "
                 f"{cfg.n} problems per batch, instrumented", ratios,
                 iterations_per_second={str(base): spread(per_size[base]), str(big): spread(per_size[big])},
                 problem_iterations_per_second={str(s): spread([v * cfg.n for v in vs]) for s, vs in per_size.items()},
                 setup={"checkpoint": ck.name, "family": ck.family, "task": ck.task, "sizes": [base, big],
                        "n": cfg.n, "iters": done[base], "device": dev.type})


def _family_rank(c: Checkpoint) -> tuple:
    """Looped families before the fixed-depth baseline, solver-free before solver-based, then display order."""
    m = c.model
    return (m.fixed_depth, m.has_solver, m.order, c.name)


def _dashboard_rank(c: Checkpoint) -> tuple:
    return (list(TASKS).index(c.task) if c.task in TASKS else 99, c.arch != get_task(c.task).default_arch,
            *_family_rank(c)[:3], len(c.name))


def bench_stop(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Stop latency on the server, the number the browser tests record but never bound: the Explore page checks
    for a Stop at every live frame (a Stop reruns the script, which ends the loop at its next Streamlit call),
    so the latency is at most the gap between two frames. A live run (LiveRun) with the page's frame rule and
    its live figure built at every frame, at 16x the dashboard's size; the ratio is the longest gap between
    frames over the frame interval the page aims for."""
    from ttc.app import plots
    from ttc.app.settings import RunSettings
    from ttc.app.trace import LIVE_FRAME_SECONDS, LiveRun

    size = scaled_size(ck.task, get_task(ck.task).dashboard_size, 2 if cfg.quick else 16)
    n, budget = (16, 300) if cfg.quick else (200, 300)
    s = RunSettings(ck.task, ck.name, size, n, budget, 0, device=dev.type)
    worst, gaps = [], []
    for _ in range(1 if cfg.quick else 3):
        run, last, frames, live = LiveRun(ck, s), time.perf_counter(), [], None
        for _ in run:
            now = time.perf_counter()
            if now - last >= LIVE_FRAME_SECONDS:  # a frame as Explore draws it: one figure per run, its data replaced
                t = run.trace(maps=False)
                if live is None:
                    live = plots.LiveFigure(ck.name, t)  # built with t's data
                else:
                    live.update(t)
                frames.append(time.perf_counter() - last)
                last = time.perf_counter()
        if frames:
            worst.append(max(frames))
            gaps += frames
    if not worst:
        return skipped("stop", "stop latency (server)", "longest gap between two live frames / the frame interval",
                       "the run ended before its first frame")
    return entry("stop", f"stop latency (server): {ck.name}",
                 f"longest gap between two live frames (where a Stop takes effect) / the page's frame interval "
                 f"{LIVE_FRAME_SECONDS} s; {n} problems of size {size}, budget {budget}", [w / LIVE_FRAME_SECONDS
                                                                                         for w in worst],
                 frame_gap_seconds=spread(gaps), longest_gap_seconds=spread(worst),
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "n": n, "budget": budget,
                        "device": dev.type},
                 note="a browser adds the rerun's round trip; tests/test_browser.py prints the click-to-message time")


def bench_dashboard(cks: list[Checkpoint], folder: Path, cfg: BenchConfig) -> dict:
    """Explore page, warm (the checkpoint loaded, the page run once), in-process through Streamlit's AppTest
    (no browser): after a settings change (the problem size), the seconds to the first chart the page emits
    (the headline number) and to the end of the rerun; the ratio is the rerun against the same run computed
    without the app (ttc.app.trace.compute_trace), the cost of the live drawing. scripts/measure_app.py measures
    the same change in a real browser (a script, not importable: run it for browser numbers)."""
    compares = ("Explore, warm, after a size change (Streamlit AppTest, server side, no browser): seconds of the "
                "page's whole rerun / seconds to compute the same run without the app")
    try:
        from streamlit.testing.v1 import AppTest
    except ImportError:
        return skipped("dashboard", "dashboard warm time", compares, "streamlit is not installed")
    if not cks:
        return skipped("dashboard", "dashboard warm time", compares, f"no checkpoint in {folder}")
    from ttc.app.catalog import ENV_FOLDER
    from ttc.app.settings import RunSettings
    from ttc.app.trace import compute_trace

    ck = min(cks, key=_dashboard_rank)  # what the app opens on: the first task's default checkpoint
    task = get_task(ck.task)
    base = task.dashboard_size
    sizes = [scaled_size(ck.task, base, 1 + 0.25 * (i + 1)) for i in range(cfg.dashboard_repeats)]
    app = str(Path(__file__).resolve().parents[2] / "app.py")  # ttc/tools/bench.py -> the repository root
    old_env = os.environ.get(ENV_FOLDER)
    os.environ[ENV_FOLDER] = str(folder)
    fulls, computes = [], []
    try:
        at = AppTest.from_file(app, default_timeout=300)
        at.query_params = {"task": ck.task, "checkpoint": ck.name, "size": str(base), "n": str(cfg.dashboard_n),
                           "budget": str(cfg.dashboard_budget), "seed": "0"}
        at.run()  # cold: imports, checkpoint validation, the first run
        if at.exception:
            return skipped("dashboard", "dashboard warm time", compares,
                           f"the Explore page raised: {at.exception[0].value}")
        for size in sizes:
            t0 = time.perf_counter()
            at.number_input(key="w_size").set_value(size).run()
            t1 = time.perf_counter()
            if at.exception or not at.get("plotly_chart"):
                return skipped("dashboard", "dashboard warm time", compares, "the page drew no chart after a change")
            s = RunSettings(**at.session_state["settings"])
            c0 = time.perf_counter()
            compute_trace(ck, s)
            computes.append(time.perf_counter() - c0)
            fulls.append(t1 - t0)
    finally:
        if old_env is None:
            os.environ.pop(ENV_FOLDER, None)
        else:
            os.environ[ENV_FOLDER] = old_env
    return entry("dashboard", "dashboard warm time", compares,
                 [f / c for f, c in zip(fulls, computes, strict=True)],
                 rerun_seconds=spread(fulls), compute_seconds=spread(computes),
                 setup={"checkpoint": ck.name, "task": task.name, "sizes": sizes, "n": cfg.dashboard_n,
                        "budget": cfg.dashboard_budget, "page": "Explore"},
                 note="through Streamlit's public AppTest API (server side); a browser adds transfer and rendering "
                      "on top: scripts/measure_app.py measures it in Chromium")


# --- the whole bench -----------------------------------------------------------------------------------------

def run_bench(quick: bool = False, folder: str | Path = "checkpoints", device: str | None = "cpu",
              groups: tuple[str, ...] = GROUPS, on_event: Callable[[str], None] | None = None,
              precision: str = "fp32") -> dict:
    """Every requested group on the folder's checkpoints: {machine, config, checkpoints, notes, entries}.
    precision: what every group but `precision` computes in (resolved: fp32 or bf16); default fp32, the figures
    the README's tables were measured in."""
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"unknown bench groups {bad}; known groups: {', '.join(GROUPS)}")
    say = on_event or (lambda msg: None)
    dev = resolve_device(device)
    cfg = bench_config(quick)
    folder = Path(folder)
    t_start = time.perf_counter()
    cks, notes = load_zoo(folder)
    if not cks:
        notes.append(f"no checkpoint in {folder}: the overhead, throughput and dashboard entries are skipped")
    cases, deq_notes = deq_cases(cks) if {"solvers", "torchdeq", "memory"} & set(groups) else ([], [])
    notes += deq_notes
    by_family = sorted(cks, key=_family_rank)
    entries: list[dict] = []

    def step(label: str, fn: Callable[[], dict | list[dict]]) -> None:
        say(f"{label} ({time.perf_counter() - t_start:.0f}s)")
        with prec.use(precision):
            got = fn()
        entries.extend(got if isinstance(got, list) else [got])

    if "overhead" in groups:
        for ck in _limit(by_family, cfg):
            step(f"overhead {ck.name}", lambda ck=ck: bench_overhead(ck, cfg, dev))
    if "allocator" in groups:
        for ck in _limit(allocator_checkpoints(cks), cfg):
            step(f"allocator {ck.name}", lambda ck=ck: bench_allocator(ck, cfg, dev))
    for case in _limit(cases, cfg):
        if "solvers" in groups:
            step(f"solvers {case.name}", lambda case=case: bench_solvers(case, cfg, dev))
        if "torchdeq" in groups:
            step(f"torchdeq {case.name}", lambda case=case: bench_torchdeq(case, cfg, dev))
        if "memory" in groups:
            step(f"memory {case.name}", lambda case=case: bench_memory(case, cfg, dev))
    if "memory" in groups:  # families with memory modes but no solver (EBMs): unrolled vs their cheaper mode
        descent = [ck for ck in by_family if "unrolled" in ck.model.memory_modes and not ck.model.has_solver
                   and len(ck.model.memory_modes) > 1]
        for ck in _limit(descent, cfg):
            step(f"memory {ck.name}", lambda ck=ck: bench_descent_memory(ck, cfg, dev))
    if "throughput" in groups:
        for ck in _limit(by_family, cfg):
            step(f"throughput {ck.name}", lambda ck=ck: bench_throughput(ck, cfg, dev))
    if "stop" in groups and cks:
        step("stop", lambda: bench_stop(min(cks, key=_dashboard_rank), cfg, dev))
    if "dashboard" in groups:
        step("dashboard", lambda: bench_dashboard(cks, folder, cfg))
    if "precision" in groups and cks:
        from ttc.tools.bench_precision import bench_precision

        step("precision", lambda: bench_precision(by_family, cfg, dev, say, lambda items: _limit(items, cfg)))
    if cfg.max_checkpoints and len(cks) > cfg.max_checkpoints:
        notes.append(f"--quick measures {cfg.max_checkpoints} checkpoint per group; run without --quick for all")
    return {"quick": quick, "machine": machine(dev), "precision": precision, "config": asdict(cfg),
            "folder": str(folder),
            "checkpoints": [c.name for c in cks], "notes": notes, "entries": entries,
            "seconds": round(time.perf_counter() - t_start, 2)}


def format_table(result: dict) -> list[str]:
    """The bench as plain-text lines: one per entry, ratio median [min, max] and the aim."""
    m = result["machine"]
    lines = [f"TTC Lab bench{' (quick)' if result['quick'] else ''}: {m['cpu']}, {m['cores']} cores, torch "
             f"{m['torch']} ({m['torch_threads']} threads), device {m['device']}, load {m['load_average']}; "
             f"{result['seconds']:.0f}s", f"  allocator: {m.get('allocator', 'default')}"]
    for e in result["entries"]:
        if e.get("ratio") is None:
            lines.append(f"  {e['name']}: skipped ({e.get('skipped', 'no data')})")
            continue
        r = e["ratio"]
        aim = f"  aim {e['aim']}: {'met' if e.get('meets_aim') else 'not met'}" if e.get("aim") else ""
        lines.append(f"  {e['name']}: {fmt_ratio(r)}{aim}")
        lines.append(f"      {e['compares']}")
        if headline(e):
            lines.append(f"      {headline(e)}")
        if e.get("trusted") is False:
            lines.append(f"      NOT TO BE TRUSTED: its repeats disagree by {r['max'] / r['min']:.1f}x (more than "
                         f"{DISAGREE:g}x; load average {m['load_average']}): the machine was busy; rerun it alone")
    lines += [f"  note: {n}" for n in result["notes"]]
    return lines


def headline(e: dict) -> str:
    """The absolute numbers behind an entry's ratio, in a few words ('' when there are none)."""
    med = lambda key: e[key]["median"]  # noqa: E731
    if e["group"] == "overhead":
        return f"cpu-time ratio {fmt_ratio(e['cpu_ratio'])}; bare {med('bare_seconds'):.3f} s, probe " \
               f"{med('probe_seconds'):.3f} s (medians)" if e.get("cpu_ratio") else ""
    if e["group"] == "allocator":
        b = e["bare_seconds"]
        return f"bare {b['default']['median']:.3f} s default, {b['tuned']['median']:.3f} s tuned; probe " \
               f"{fmt_ratio(e['probe_ratio'])}; probe / bare {e['overhead_default']['median']:.3g} default, " \
               f"{e['overhead_tuned']['median']:.3g} tuned (medians)"
    if e["group"] == "solvers":
        run = e["runs"][0]
        return "; ".join(f"{m}: batch NFE {run[m]['nfe']}, converged {run[m]['converged']:.0%}" for m in run) + \
            " (first batch)"
    if e["group"] == "torchdeq" and "nfe" in e:
        return f"NFE ours {e['nfe']['ours']}, torchdeq {e['nfe']['torchdeq']}; fixed points differ by " \
               f"{e['fixed_points_rel_diff']:.1e}"
    if e["group"] == "torchdeq" and "seconds" in e:
        cpu = f"cpu-time ratio {fmt_ratio(e['cpu_ratio'])}; " if e.get("cpu_ratio") else ""
        return f"{cpu}seconds per call (median): ours {e['seconds']['ours']['median']:.3f}, torchdeq " \
               f"{e['seconds']['torchdeq']['median']:.3f}"
    if e["group"] == "memory":
        b = e.get("saved_bytes") or e.get("peak_bytes") or {}
        return ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in b.items() if v is not None)
    if e["group"] == "throughput":
        return ", ".join(f"size {k}: {v['median']:.1f} it/s" for k, v in e["iterations_per_second"].items())
    if e["group"] == "precision" and "gflops" in e and "fraction_of_matmul" not in e:
        return f"matmul GFLOP/s: fp32 {e['gflops']['fp32']}, bf16 {e['gflops']['bf16']}; auto here: {e['auto']}"
    if e["group"] == "precision" and "fraction_of_matmul" in e:
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; GFLOP/s fp32 {e['gflops']['fp32']} " \
               f"({e['fraction_of_matmul']['fp32']:.0%} of its matmul), bf16 {e['gflops']['bf16']} " \
               f"({e['fraction_of_matmul']['bf16']:.0%} of its matmul, {e['bf16_fraction_of_fp32_matmul']:.0%} " \
               f"of fp32's)"
    if e["group"] == "precision" and "steps_per_second" in e:
        sp = e["steps_per_second"]
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; steps/s before {sp['before']['median']:.2f}, fp32 " \
               f"{sp['fp32']['median']:.2f}, bf16 {sp['bf16']['median']:.2f}"
    if e["group"] == "precision":
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; seconds before {e['seconds']['before']['median']:.3f}, " \
               f"fp32 {e['seconds']['fp32']['median']:.3f}, bf16 {e['seconds']['bf16']['median']:.3f}"
    if e["group"] == "dashboard":
        return f"whole rerun {med('rerun_seconds'):.2f} s, the run alone {med('compute_seconds'):.2f} s (medians of " \
               "each, taken separately: their quotient need not be the median of the per-repeat ratios)"
    return ""


def fmt_ratio(r: dict) -> str:
    """'1.04 [1.01, 1.09] (n=15)' for a ratio's median, min and max."""
    def f(v: float) -> str:
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return f"{f(r['median'])} [{f(r['min'])}, {f(r['max'])}] (n={r['repeats']})"

