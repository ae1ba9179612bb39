"""What every command shares: argument types with ranges, the user-error rule, settings and precision flags,
progress lines."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable

import numpy as np

from models import ConfigError
from models import precision as prec
from models.solvers import SOLVERS, SolverError
from tasks import TASKS, TaskError, optional
from tasks.io import MAX_NPZ_BYTES
from ttc.engine.checkpoint import CheckpointError
from ttc.engine.limits import MAX_COST, check_cost, run_cost
from ttc.engine.runtime import PluginError

MAX_N = 100_000


MAX_DATA_BYTES = MAX_NPZ_BYTES - 65536  # problems (uint8 inputs + targets) must fit an .npz `eval --data` accepts


class UsageError(ValueError):
    """A command-line value out of range."""


USER_ERRORS = (UsageError, FileExistsError, TaskError, ConfigError, CheckpointError, SolverError, PluginError,
               ValueError)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too by default)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def _int_in(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in {lo}..{hi}, got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be in {lo}..{hi}, got {v}")
        return v
    return parse


def _float_in(name: str, lo: float, hi: float) -> Callable[[str], float]:
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in ({lo}, {hi}), got {s!r}") from None
        if not (math.isfinite(v) and lo < v < hi):
            raise argparse.ArgumentTypeError(f"{name} must be in ({lo}, {hi}), got {s}")
        return v
    return parse


def _bool(s: str) -> bool:
    v = {"true": True, "false": False}.get(s.strip().lower())
    if v is None:
        raise argparse.ArgumentTypeError(f"must be true or false, got {s[:40]!r}")
    return v


def _int_csv(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {s[:40]!r}") from None


def _size_help() -> str:
    return "; ".join(f"{t.name}: {t.sizes.describe()}" for t in TASKS.values())


def check_data_bytes(task, size: int, n: int) -> None:
    """Refuse a problem set larger than an .npz that `eval --data` accepts (uint8 inputs and targets)."""
    per = int(np.prod(task.input_shape(size))) + int(np.prod(task.target_shape(size)))
    if n * per > MAX_DATA_BYTES:
        raise UsageError(f"{n} problems of {task.name} size {size} take {n * per} bytes, over the "
                         f"{MAX_DATA_BYTES}-byte limit; at most {MAX_DATA_BYTES // per} problems of this size")


def add_difficulty_arg(p) -> None:
    p.add_argument("--difficulty", type=_int_in("--difficulty", 0, 10**6), default=None,
                   help="draw problems at this difficulty: " + "; ".join(
                       f"{t.name}: {optional(t, 'difficulty_help')}" for t in TASKS.values()
                       if optional(t, "difficulty_help")))


def add_settings_args(p) -> None:
    """--solver/--tol (families with a solver) and --option KEY=VALUE (any field of the family's run settings)."""
    p.add_argument("--solver", choices=list(SOLVERS), default=None,
                   help="solver of a family that has one, e.g. DEQ (default: the checkpoint's)")
    p.add_argument("--tol", type=_float_in("--tol", 0, 1), default=None,
                   help="solver tolerance (DEQ); the RMS change per cell at which descent stops (EBM)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a run setting of the checkpoint's family (repeatable), e.g. --option method=broyden")


def add_precision_arg(p) -> None:
    p.add_argument("--precision", choices=list(prec.PRECISIONS), default="auto",
                   help="compute precision of the cores: auto (bf16 where the device runs it fast, unless the "
                        "checkpoint's card says fp32; here: " + prec.describe("cpu") + "), fp32 or bf16")


def precision_of(a, ck=None, device=None) -> str:
    """The resolved precision (fp32 or bf16) of a command's --precision on its device, for a checkpoint whose card
    may prefer fp32 under auto; bf16 on a device without it is a UsageError."""
    from ttc.engine.probe import resolve_device

    preferred = (ck.card.get("precision_auto") if ck is not None else None)
    return prec.resolve(a.precision, resolve_device(device or a.device), preferred)


def add_threads_arg(p) -> None:
    p.add_argument("--threads", type=_int_in("--threads", 0, 256), default=0,
                   help="torch threads (0: $TTC_THREADS, else half the CPUs, at most 4: no oversubscription)")


def add_cost_arg(p) -> None:
    p.add_argument("--max-cost", type=_float_in("--max-cost", 0, 1e18), default=MAX_COST, metavar="COST",
                   help=f"refuse a run whose estimated cost (problems x cells x iterations x width^2) is above COST "
                        f"(default {MAX_COST:.0e}: minutes on a laptop CPU); raise it on purpose for a long run, such "
                        f"as a maze of side 201 at thousands of iterations")


def check_run_cost(a, task, size: int, n: int, iters: int, width: int, lower: str) -> float:
    """check_cost against the command's --max-cost; the refusal names the options that lower the cost and the cap."""
    return check_cost(run_cost(task, size, n, iters, width), f"{lower}, or raise --max-cost", cap=a.max_cost)


def add_run_options(p, json_help: str, run) -> None:
    """The options every computing command ends with: --device, --max-cost, --threads, --json, --quiet, and its
    handler."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_cost_arg(p)
    add_precision_arg(p)
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=run)


def _value(s: str) -> object:
    """A KEY=VALUE option's value: JSON when it parses (numbers, true/false), else the string."""
    try:
        return json.loads(s)
    except ValueError:
        return s


def run_settings(ck, a) -> object:
    """The checkpoint's own run settings with --solver, --tol and --option applied (validated by the family)."""
    changes: dict = {}
    for item in a.option:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE, got {item[:40]!r}")
        changes[key.strip()] = _value(val.strip())
    for flag, key, val in (("--solver", "method", a.solver), ("--tol", "tol", a.tol)):
        if val is None:
            continue
        if key not in ck.model.settings.to_dict():
            raise UsageError(f"{flag} applies to families with a solver (DEQ checkpoints only, of the shipped "
                             f"ones); this checkpoint is {ck.family}")
        changes[key] = val
    known = ck.model.settings.to_dict()
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise UsageError(f"unknown run settings {unknown} for family {ck.family}; accepted: "
                         f"{', '.join(known) or 'none'}")
    try:
        return ck.model.run_settings(None, **changes)
    except TypeError as e:
        raise UsageError(f"bad run settings {changes}: {e}") from None


PLAIN_PROGRESS_SECONDS = 10.0  # off a terminal, a plain progress line this often


class PlainProgress:
    """Progress off a terminal (a pipe, nohup, a log file): one plain line on stderr every PLAIN_PROGRESS_SECONDS,
    nothing for a run that ends sooner."""

    def __init__(self, total: int, desc: str):
        import time

        self.total, self.desc, self.done = total, desc, 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        import time

        self.done += n
        now = time.monotonic()
        if now - self.last >= PLAIN_PROGRESS_SECONDS:
            self.last = now
            pct = 100 * self.done / max(1, self.total)
            sys.stderr.write(f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%), {now - self.start:.0f} s\n")
            sys.stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def progress_bar(total: int, desc: str, quiet: bool):
    """A progress bar on stderr on a terminal (for runs longer than about two seconds), a plain line every ten
    seconds elsewhere; nothing with --quiet. stdout stays clean."""
    from tqdm import tqdm

    if not quiet and not sys.stderr.isatty():
        return PlainProgress(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=quiet or not sys.stderr.isatty(), delay=2.0,
                leave=False, unit="it",
                dynamic_ncols=True)


def _csv_choices(name: str, known: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        vals = [v.strip() for v in s.split(",") if v.strip()]
        bad = [v for v in vals if v not in known]
        if bad or not vals:
            raise argparse.ArgumentTypeError(f"{name} takes a comma-separated subset of {','.join(known)}, got {s!r}")
        return vals
    return parse


def _int_list(name: str, lo: int, hi: int) -> Callable[[str], list[int]]:
    one = _int_in(name, lo, hi)

    def parse(s: str) -> list[int]:
        vals = [one(v.strip()) for v in s.split(",") if v.strip()]
        if not vals:
            raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers in {lo}..{hi}, got {s!r}")
        return vals
    return parse


def _progress(quiet: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if not quiet:
            sys.stderr.write(f"  {msg}\n")
            sys.stderr.flush()
    return say

