"""The settings a dashboard user would share: parsed from the URL's query parameters, clamped, validated.

Every value that reaches a run goes through `sanitize`, whether it came from a link (strings,
possibly hostile) or from a widget. A value that cannot be used is replaced by the nearest usable one
(clamped into range, the nearest odd maze size) or by the default, and a one-line warning says what
was changed, quoting at most a short prefix of the bad value.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from models.solvers import SOLVERS, get_solver
from tasks import TASKS, get_task

from .catalog import Entry, solver_defaults
from .limits import LIVE_BUDGET_MAX, LIVE_ITER_COST, live_max_n, run_cost

N_MAX = 1000  # problems per dashboard run
BUDGET_MAX = LIVE_BUDGET_MAX  # iteration budget of the slider (the CLI goes to probe.MAX_ITERS)
SEED_MAX = 2**31 - 1
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
DAMPING_RANGE = (0.05, 1.0)
# one iteration over the whole batch must stay well under a second on a laptop CPU:
# problems x output cells x width^2 (the CLI's cost measure, per iteration)
ITER_COST_MAX = LIVE_ITER_COST  # see ttc.limits
DEFAULT_SIZE = {"prefix_sums": 64, "addition": 32, "mazes": 13}
DEFAULTS = {"n": 100, "budget": 100, "seed": 0, "damping": 1.0}
DAMPING_NAMES = ("tau", "beta", "damping")  # how solvers call their relaxation parameter
PREFERRED = ("recursive", "deq", "explicit")  # the default checkpoint of a task: the first family found
QUERY_KEYS = ("task", "checkpoint", "size", "n", "budget", "seed", "solver", "tol", "damping")


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a run's trace (with the checkpoint's version, the cache key)."""

    task: str
    checkpoint: str  # entry name; "" when the task has no usable checkpoint
    size: int
    n: int
    budget: int
    seed: int
    solver: str | None = None  # DEQ checkpoints only
    tol: float | None = None  # DEQ only
    damping: float | None = None  # DEQ only: relaxation of the solver step (1 = none)
    device: str = "cpu"

    def to_query(self) -> dict[str, str]:
        """The shareable part as query-parameter strings (DEQ fields only when they apply)."""
        d = {k: v for k, v in asdict(self).items() if k in QUERY_KEYS and v is not None and v != ""}
        return {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in d.items()}


def _short(v: object) -> str:
    s = str(v)
    return repr(s[:24] + ("..." if len(s) > 24 else ""))


def _to_int(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float):
        return int(round(v)) if math.isfinite(v) else None
    s = str(v).strip()
    if len(s) > 20:
        return None
    try:
        return int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            return None
        return int(round(f)) if math.isfinite(f) else None


def _to_float(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        f = float(v) if isinstance(v, (int, float, np.number)) else float(str(v).strip()[:32])
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _int_field(raw: Mapping, key: str, lo: int, hi: int, default: int, warn: list[str]) -> int:
    if raw.get(key) in (None, ""):
        return default
    v = _to_int(raw[key])
    if v is None:
        warn.append(f"{key} {_short(raw[key])} is not an integer; using {default}")
        return default
    if not lo <= v <= hi:
        c = min(max(v, lo), hi)
        warn.append(f"{key} {v} is out of range {lo}..{hi}; using {c}")
        return c
    return v


def damping_param(method: str) -> str | None:
    """The name of the solver's damping parameter, or None when it has none."""
    params = inspect.signature(get_solver(method)).parameters
    return next((p for p in DAMPING_NAMES if p in params), None)


def size_in_range(task: str, v: int) -> int:
    """The nearest size the task accepts (clamped; odd for mazes)."""
    r = get_task(task).sizes
    v = min(max(v, r.lo), r.hi)
    if r.odd_only and v % 2 == 0:
        v = v + 1 if v + 1 <= r.hi else v - 1
    return v


def iter_cost(entry: Entry, task: str, size: int, n: int) -> float:
    return run_cost(get_task(task), size, n, 1, entry.ck.config.width)


def max_n(entry: Entry, task: str, size: int) -> int:
    """The most problems one dashboard run of this checkpoint may batch at this size."""
    return live_max_n(get_task(task), size, entry.ck.config.width, N_MAX)


def default_task(entries: Sequence[Entry]) -> str:
    tasks = [e.task for e in entries if e.ok]
    for t in TASKS:
        if t in tasks:
            return t
    return next(iter(TASKS))


def sanitize(raw: Mapping[str, object], entries: Sequence[Entry], device: str = "cpu"
             ) -> tuple[RunSettings, list[str]]:
    """Usable settings from raw values (query strings or widget values), and what had to change."""
    warn: list[str] = []
    ok = [e for e in entries if e.ok]
    by_name = {e.name: e for e in ok}
    task = raw.get("task")
    ck_name = raw.get("checkpoint")
    if task in (None, "") and ck_name in by_name:
        task = by_name[ck_name].task  # a link naming only the checkpoint implies its task
    if task in (None, ""):
        task = default_task(ok)
    elif task not in TASKS:
        d = default_task(ok)
        warn.append(f"task {_short(task)} is unknown (known: {', '.join(TASKS)}); using {d}")
        task = d
    of_task = [e for e in ok if e.task == task]
    entry = by_name.get(ck_name) if isinstance(ck_name, str) else None
    if entry is None or entry.task != task:
        fallback = min(of_task, key=lambda e: PREFERRED.index(e.family) if e.family in PREFERRED else 9,
                       default=None)
        if ck_name not in (None, ""):
            why = "is not available" if entry is None else f"is for task {entry.task}, not {task}"
            warn.append(f"checkpoint {_short(ck_name)} {why}; using "
                        f"{fallback.name if fallback else 'none (no checkpoint for this task)'}")
        entry = fallback
    r = get_task(task).sizes
    size = _int_field(raw, "size", r.lo, r.hi, DEFAULT_SIZE.get(task, r.lo), warn)
    if r.odd_only and size % 2 == 0:
        warn.append(f"size {size} is even and {task} needs odd sizes; using {size_in_range(task, size)}")
        size = size_in_range(task, size)
    n = _int_field(raw, "n", 1, N_MAX, DEFAULTS["n"], warn)
    budget = _int_field(raw, "budget", 1, BUDGET_MAX, DEFAULTS["budget"], warn)
    seed = _int_field(raw, "seed", 0, SEED_MAX, DEFAULTS["seed"], warn)
    solver = tol = damping = None
    if entry is not None:
        cap = max_n(entry, task, size)
        if n > cap:
            warn.append(f"n {n} is too many {task} problems of size {size} for one live run of {entry.name}; "
                        f"using {cap} (run larger batches with python -m ttc eval)")
            n = cap
        dflt = solver_defaults(entry.ck)
        if dflt:
            solver = raw.get("solver") or dflt["solver"]
            if solver not in SOLVERS:
                warn.append(f"solver {_short(solver)} is unknown (known: {', '.join(SOLVERS)}); using {dflt['solver']}")
                solver = dflt["solver"]
            tol = dflt["tol"]
            if raw.get("tol") not in (None, ""):
                t = _to_float(raw["tol"])
                if t is None or not 0 < t < 1:
                    warn.append(f"tol {_short(raw['tol'])} must be a number in (0, 1); using {tol:g}")
                else:
                    tol = t
            snapped = min(TOLS, key=lambda c: abs(math.log10(c) - math.log10(tol)))
            if raw.get("tol") not in (None, "") and not math.isclose(snapped, tol):
                warn.append(f"tol {tol:g} is not offered; using the nearest, {snapped:g}")
            tol = snapped
            damping = DEFAULTS["damping"]
            if raw.get("damping") not in (None, "") and damping_param(solver):
                lo, hi = DAMPING_RANGE
                dv = _to_float(raw["damping"])
                if dv is None or not lo <= dv <= hi:
                    c = DEFAULTS["damping"] if dv is None else min(max(dv, lo), hi)
                    warn.append(f"damping {_short(raw['damping'])} must be in {lo:g}..{hi:g}; using {c:g}")
                    dv = c
                damping = round(dv, 2)
    settings = RunSettings(task=task, checkpoint=entry.name if entry else "", size=size, n=n, budget=budget,
                           seed=seed, solver=solver, tol=tol, damping=damping, device=device)
    return settings, warn


def with_checkpoint(s: RunSettings, entry: Entry) -> RunSettings:
    """The same problems and budget through another checkpoint of the task, with its own solver defaults
    (the settings a user would get by picking that checkpoint, so cached traces are shared)."""
    keep = {k: v for k, v in asdict(s).items() if k in ("task", "size", "n", "budget", "seed")}
    out, _ = sanitize({**keep, "checkpoint": entry.name}, [entry], s.device)
    return out


def size_ladder(task: str) -> list[int]:
    """Sizes offered for extrapolation sweeps: roughly geometric steps over the task's range (odd for mazes)."""
    r = get_task(task).sizes
    raw = {int(b * m) for b in (2**i for i in range(13)) for m in (1, 1.5)} | {r.lo, r.hi}
    return sorted({size_in_range(task, v) for v in raw})


def sweep_sizes(task: str, size: int, count: int = 4) -> list[int]:
    """A default sweep of `count` sizes: smaller ones, `size` itself and the next larger (extrapolation)."""
    ladder = sorted(set(size_ladder(task)) | {size})
    end = min(len(ladder), max(ladder.index(size) + 2, count))
    return ladder[max(0, end - count):end]


def dashboard_threads(env: str | None = None, cpus: int | None = None) -> int:
    """Torch threads for the dashboard's process: $TTC_THREADS when set (1..256), else half the CPUs,
    1 to 4. Runs of several sessions, and other jobs on the machine, then share the cores instead of
    oversubscribing them (oversubscribed OpenMP threads spin and slow a run down many times over)."""
    if env:
        v = _to_int(env)
        if v is not None and 1 <= v <= 256:
            return v
    return max(1, min(4, (cpus or os.cpu_count() or 2) // 2))
