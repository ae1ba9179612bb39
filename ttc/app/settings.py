"""The settings a dashboard user would share: parsed from the URL's query parameters, clamped, validated.

Every value that reaches a run goes through `sanitize`, whether it came from a link (strings,
possibly hostile) or from a widget. A value that cannot be used is replaced by the nearest usable one
(clamped into range, the nearest odd maze size) or by the default, and a one-line warning says what
was changed, quoting at most a short prefix of the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from models import Widget, families
from models.precision import PRECISIONS, PrecisionError
from models.precision import describe as describe_precision  # noqa: F401 (the sidebar's help)
from models.precision import resolve as resolve_precision
from tasks import TASKS, get_task, optional
from ttc.app.catalog import Entry
from ttc.engine.limits import LIVE_BUDGET_MAX, LIVE_ITER_COST, live_max_n, run_cost
from ttc.engine.runtime import default_threads

N_MAX = 1000  # problems per dashboard run
BUDGET_MAX = LIVE_BUDGET_MAX  # iteration budget of the slider (the CLI goes to probe.MAX_ITERS)
SEED_MAX = 2**31 - 1
# one iteration over the whole batch must stay well under a second on a laptop CPU:
# problems x output cells x width^2 (the CLI's cost measure, per iteration)
ITER_COST_MAX = LIVE_ITER_COST  # see ttc.engine.limits
DEFAULTS = {"n": 100, "budget": 100, "seed": 0}
BASE_KEYS = ("task", "checkpoint", "size", "n", "budget", "seed", "precision", "difficulty")
# every family's widget in the URL: a family's own widgets (models.base.Widget) name their query keys


def family_widgets() -> dict[str, Widget]:
    """Widget key -> widget over every registered family (plugins included), the first declaration winning."""
    out: dict[str, Widget] = {}
    for fam in families():
        for w in fam.widgets():
            out.setdefault(w.key, w)
    return out


def query_keys() -> tuple[str, ...]:
    """The URL's query parameters: the shared settings and every registered family's widgets."""
    return BASE_KEYS + tuple(k for k in family_widgets() if k not in BASE_KEYS)


QUERY_KEYS = query_keys()  # at import (the built-in families); query_keys() also sees plugins loaded later


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a run's trace (with the checkpoint's version, the cache key)."""

    task: str
    checkpoint: str  # entry name; "" when the task has no usable checkpoint
    size: int
    n: int
    budget: int
    seed: int
    extra: tuple[tuple[str, object], ...] = ()  # the checkpoint family's widget values (DEQ: solver, tol, damping)
    device: str = "cpu"
    precision: str = "auto"  # auto | fp32 | bf16 (models.precision); what ran is resolved per checkpoint
    difficulty: int | None = None  # draw problems at this difficulty (the task's main measure); None: at random

    def option(self, key: str):
        return dict(self.extra).get(key)

    @property
    def solver(self) -> str | None:  # the DEQ widgets, by name, for pages and exports that show them
        return self.option("solver")

    @property
    def tol(self) -> float | None:
        return self.option("tol")

    @property
    def damping(self) -> float | None:
        return self.option("damping")

    def to_query(self) -> dict[str, str]:
        """The shareable part as query-parameter strings (family widgets only when the checkpoint has them)."""
        d = {k: v for k, v in asdict(self).items() if k in BASE_KEYS and v is not None and v != ""
             and not (k == "precision" and v == "auto")}
        d.update({k: v for k, v in self.extra if v is not None})
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


def widget_value(w: Widget, raw: object, default: object, warn: list[str]) -> object:
    """A family widget's value from a link or a widget: a select's value must be one of its choices (numbers
    snap to the nearest choice; a choice itself is always accepted, a bound included), a number is clamped into
    lo..hi; otherwise the default, with a warning."""
    if raw in (None, ""):
        return default
    if w.kind == "select" and all(isinstance(c, str) for c in w.choices):
        if raw in w.choices:
            return raw
        warn.append(f"{w.key} {_short(raw)} is unknown (known: {', '.join(w.choices)}); using {default}")
        return default
    v = _to_float(raw)
    if w.kind == "select":
        pos = all(c > 0 for c in w.choices)
        offered = v is not None and any(math.isclose(v, c, abs_tol=1e-12) for c in w.choices)  # e.g. a choice of 0
        if v is None or not offered and (not w.lo < v < w.hi or (pos and v <= 0)):
            warn.append(f"{w.key} {_short(raw)} must be a number in ({w.lo:g}, {w.hi:g}); using {default:g}")
            return default
        near = min(w.choices, key=lambda c: abs(math.log10(c) - math.log10(v)) if pos else abs(c - v))
        if not math.isclose(near, v):
            warn.append(f"{w.key} {v:g} is not offered; using the nearest, {near:g}")
        return near
    if v is None or not w.lo <= v <= w.hi:
        c = default if v is None else min(max(v, w.lo), w.hi)
        warn.append(f"{w.key} {_short(raw)} must be in {w.lo:g}..{w.hi:g}; using {c:g}")
        v = c
    return round(float(v), 2)


def family_defaults(ck) -> dict[str, object]:
    """The checkpoint family's widget values for the checkpoint's own run settings (its card's solver)."""
    fam = type(ck.model)
    vals = fam.widget_values(ck.model.settings)
    for w in fam.widgets():  # a card's tolerance that the select does not offer snaps to the nearest choice
        if w.kind == "select" and vals.get(w.key) not in w.choices:
            vals[w.key] = widget_value(w, vals.get(w.key), w.default, [])
    return vals


def run_settings_of(ck, s: RunSettings):
    """The checkpoint family's run settings (models) for the widget values in s."""
    return type(ck.model).settings_from_widgets({**family_defaults(ck), **dict(s.extra)})


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


def _family_rank(e: Entry) -> tuple:
    """The default checkpoint of a task: the task's default arch first, then families in their display order
    with a looped family before the fixed-depth baseline, then the shorter name."""
    fam = type(e.ck.model)
    return (e.ck.arch != get_task(e.task).default_arch, fam.fixed_depth, fam.has_solver, fam.order, len(e.name))


def default_task(entries: Sequence[Entry]) -> str:
    tasks = [e.task for e in entries if e.ok]
    for t in TASKS:
        if t in tasks:
            return t
    return next(iter(TASKS))


def sanitize(raw: Mapping[str, object], entries: Sequence[Entry], device: str = "cpu", cap_n: bool = True
             ) -> tuple[RunSettings, list[str]]:
    """Usable settings from raw values (query strings or widget values), and what had to change. cap_n=False
    keeps the asked number of problems even where one live run would take fewer (the sidebar keeps the user's
    n; each run takes `for_run`'s share of it and says so)."""
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
        fallback = min(of_task, key=_family_rank, default=None)
        if ck_name not in (None, ""):
            why = "is not available" if entry is None else f"is for task {entry.task}, not {task}"
            warn.append(f"checkpoint {_short(ck_name)} {why}; using "
                        f"{fallback.name if fallback else 'none (no checkpoint for this task)'}")
        entry = fallback
    r = get_task(task).sizes
    size = _int_field(raw, "size", r.lo, r.hi, get_task(task).dashboard_size, warn)
    if r.odd_only and size % 2 == 0:
        warn.append(f"size {size} is even and {task} needs odd sizes; using {size_in_range(task, size)}")
        size = size_in_range(task, size)
    n = _int_field(raw, "n", 1, N_MAX, DEFAULTS["n"], warn)
    budget = _int_field(raw, "budget", 1, BUDGET_MAX, DEFAULTS["budget"], warn)
    seed = _int_field(raw, "seed", 0, SEED_MAX, DEFAULTS["seed"], warn)
    precision = raw.get("precision")
    if precision in (None, ""):
        precision = "auto"
    elif precision not in PRECISIONS:
        warn.append(f"precision {_short(precision)} is unknown (known: {', '.join(PRECISIONS)}); using auto")
        precision = "auto"
    difficulty = None
    raw_d = raw.get("difficulty")
    if raw_d not in (None, ""):
        v = _to_int(raw_d)
        rng = optional(get_task(task), "difficulty_range")
        if rng is None:
            warn.append(f"{task} problems cannot be drawn at a chosen difficulty; drawing them at random")
        elif v is None:
            warn.append(f"difficulty {_short(raw_d)} is not an integer; drawing problems at random")
        else:
            lo, hi = rng(size)
            if not lo <= v <= hi:
                warn.append(f"difficulty {v} is impossible for {task} size {size} (accepted there: {lo}..{hi}); "
                            f"using {min(max(v, lo), hi)}")
            difficulty = min(max(v, lo), hi)
    extra: tuple = ()
    if entry is not None:
        cap = max_n(entry, task, size)
        if n > cap and cap_n:
            warn.append(f"n {n} is too many {task} problems of size {size} for one live run of {entry.name}; "
                        f"using {cap} (run larger batches with python -m ttc eval)")
            n = cap
        fam, dflt = type(entry.ck.model), family_defaults(entry.ck)
        vals: dict[str, object] = {}
        for w in fam.widgets():  # in declaration order: a later widget may depend on an earlier one (damping)
            active = w.key in {a.key for a in fam.active_widgets(vals)}
            raw_v = raw.get(w.key) if active else None
            vals[w.key] = widget_value(w, raw_v, dflt.get(w.key, w.default) if active else w.default, warn)
        extra = tuple(vals.items())
    settings = RunSettings(task=task, checkpoint=entry.name if entry else "", size=size, n=n, budget=budget,
                           seed=seed, extra=extra, device=device, precision=precision, difficulty=difficulty)
    return settings, warn


def precision_of(ck, s: RunSettings) -> tuple[str, str | None]:
    """The precision a run of checkpoint ck with settings s computes in (fp32 or bf16) and, when the asked one
    cannot run here, why (the run then uses auto's choice)."""
    preferred = ck.card.get("precision_auto") if isinstance(ck.card, dict) else None
    try:
        return resolve_precision(s.precision, s.device, preferred), None
    except PrecisionError as e:
        return resolve_precision("auto", s.device, preferred), f"{e}; this run uses auto"


def for_run(s: RunSettings, entry: Entry) -> tuple[RunSettings, str | None]:
    """The settings one live run uses: the user's n, or fewer problems where one live iteration of this checkpoint
    at this size would cost more than LIVE_ITER_COST; the message says so (None when nothing was cut)."""
    cap = max_n(entry, s.task, s.size)
    if s.n <= cap:
        return s, None
    return replace(s, n=cap), (f"This run uses {cap} of your {s.n} problems: more {s.task} problems of size {s.size} "
                               f"would make one live iteration of {entry.name} too slow (run larger batches with "
                               "python -m ttc eval). Your n is kept for smaller runs.")


def with_checkpoint(s: RunSettings, entry: Entry) -> RunSettings:
    """The same problems and budget through another checkpoint of the task, with its own solver defaults
    (the settings a user would get by picking that checkpoint, so cached traces are shared)."""
    keep = {k: v for k, v in asdict(s).items()
            if k in ("task", "size", "n", "budget", "seed", "precision", "difficulty")}
    out, _ = sanitize({**keep, "checkpoint": entry.name}, [entry], s.device)
    return out


def size_ladder(task: str) -> list[int]:
    """Sizes offered for extrapolation sweeps: roughly geometric steps over the task's range (odd for mazes)."""
    t = get_task(task)
    if optional(t, "size_ladder"):  # a task whose sizes are not a scale (sudoku's blank counts) lists its own
        return sorted({size_in_range(task, v) for v in t.size_ladder})
    r = t.sizes
    raw = {int(b * m) for b in (2**i for i in range(13)) for m in (1, 1.5)} | {r.lo, r.hi}
    return sorted({size_in_range(task, v) for v in raw})


def sweep_sizes(task: str, size: int, count: int = 4) -> list[int]:
    """A default sweep of `count` sizes: smaller ones, `size` itself and the next larger (extrapolation)."""
    ladder = sorted(set(size_ladder(task)) | {size})
    end = min(len(ladder), max(ladder.index(size) + 2, count))
    return ladder[max(0, end - count):end]


def dashboard_threads(env: str | None = None, cpus: int | None = None) -> int:
    """Torch threads for the dashboard's process (engine.runtime.default_threads: $TTC_THREADS, else half the
    CPUs, 1 to 4)."""
    return default_threads(env or "", cpus)
