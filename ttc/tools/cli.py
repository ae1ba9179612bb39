"""`python -m ttc`: data, eval, train (and the commands other modules register).

Bad input (unknown names, out-of-range values, malformed files) ends with one line on stderr,
`error: ...`, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Callable

import numpy as np

from models import ConfigError
from models import precision as prec
from models.config import check_arch_dims
from models.solvers import SOLVERS, SolverError
from tasks import TASKS, TaskError, get_task, load_npz, optional, save_npz
from tasks.difficulty import check_difficulty, draw
from tasks.difficulty import main_name as difficulty_main
from tasks.difficulty import measure as difficulty_measures
from tasks.io import MAX_NPZ_BYTES
from ttc.engine.checkpoint import CheckpointError, checkpoint_task, load_checkpoint
from ttc.engine.evaluate import evaluate
from ttc.engine.limits import MAX_COST, check_cost, check_train, check_train_cost, run_cost
from ttc.engine.memory import all_modes as memory_modes
from ttc.engine.probe import MAX_ITERS
from ttc.engine.runtime import PluginError, set_threads

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


def add_data(sub) -> None:
    p = sub.add_parser("data", help="generate problems as .npz",
                       description=f"Sizes: {_size_help()}; --n 1..{MAX_N}, and the problems' inputs and targets "
                                   f"at most {MAX_DATA_BYTES} bytes.")
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--size", required=True, type=int, help=f"problem size ({_size_help()})")
    p.add_argument("--n", type=_int_in("--n", 1, MAX_N), default=200, help=f"problems, 1..{MAX_N}")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=0)
    add_difficulty_arg(p)
    p.add_argument("--out", required=True, help="output .npz path")
    p.set_defaults(run=cmd_data)


def cmd_data(a) -> int:
    task = get_task(a.task)
    check_data_bytes(task, task.sizes.check(task.name, a.size), a.n)
    x, y = draw(task, a.size, a.n, a.seed, a.difficulty)
    try:
        save_npz(a.out, task.name, a.size, x, y)
    except OSError as e:
        raise UsageError(f"cannot write {a.out!r}: {e.strerror or e}") from None
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint, accuracy and residual per iteration",
        description=f"Ranges: --size per task ({_size_help()}); --n 1..{MAX_N}; --iters 1..{MAX_ITERS}; "
                    f"--tol in (0, 1); the problems' inputs and targets at most {MAX_DATA_BYTES} bytes; the run cost "
                    f"problems x cells x iterations x width^2 at most {MAX_COST:.0e}.")
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    p.add_argument("--size", type=int, help="problem size (ignored with --data)")
    p.add_argument("--iters", type=_int_in("--iters", 1, MAX_ITERS), required=True,
                   help=f"iteration budget, 1..{MAX_ITERS} (explicit models always run their depth)")
    p.add_argument("--n", type=_int_in("--n", 1, MAX_N), default=200, help=f"problems, 1..{MAX_N}")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=0)
    p.add_argument("--data", help=".npz of problems (keys task, size, inputs, targets) instead of generating")
    add_difficulty_arg(p)
    add_settings_args(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=_int_in("--batch", 1, MAX_N), default=256, help="problems per forward batch")
    add_precision_arg(p)
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (the eval contract)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=cmd_eval)


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


def add_run_options(p, json_help: str, run) -> None:
    """The options every computing command ends with: --device, --threads, --json, --quiet, and its handler."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
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


def cmd_eval(a) -> int:
    import time

    ck = load_checkpoint(a.checkpoint)
    if a.data:
        if a.difficulty is not None:
            raise UsageError("--difficulty draws problems; it does not apply to a --data file")
        task_name, size, x, y = load_npz(a.data)
        checkpoint_task(ck, task_name)
        task = get_task(task_name)
    else:
        task = get_task(ck.task)
        if a.size is None:
            raise UsageError(f"--size is required without --data ({_size_help()})")
        size = task.sizes.check(task.name, a.size)
        check_data_bytes(task, size, a.n)
        check_cost(run_cost(task, size, a.n, a.iters, ck.config.width), "--n, --size or --iters")  # before generating
        x, y = draw(task, size, a.n, a.seed, a.difficulty)
    settings = run_settings(ck, a)
    check_cost(run_cost(task, size, len(x), a.iters, ck.config.width), "--n (or the --data file), --size or --iters")
    precision = precision_of(a, ck)
    set_threads(a.threads)
    batches = -(-len(x) // a.batch)
    t0 = time.perf_counter()
    with progress_bar(batches * ck.model.budget(a.iters), "eval", a.quiet) as bar:
        curve = evaluate(ck.model, task, x, y, a.iters, device=a.device, batch=a.batch, settings=settings,
                         on_iter=bar.update, precision=precision)
    out = curve.to_dict()
    seconds = time.perf_counter() - t0
    measures = difficulty_measures(task, x, y)
    main = difficulty_main(task)
    out.update(difficulty_name=main, difficulty=measures[main].tolist() if measures else None,
               difficulties={k: v.tolist() for k, v in measures.items()} if measures else None,
               solved_at=curve.solved_at, reach_per_iteration=ck.model.reach_per_iteration)
    result = {"task": task.name, "family": ck.family, "arch": ck.arch, "params": ck.model.num_params(),
              "size": size, "n": int(len(x)), "iters": a.iters, "device": a.device, "precision": precision, **out,
              "seconds": seconds}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{ck.name}: {task.name} size {size}, n={len(x)}, {a.iters} iterations on {a.device} in {precision}")
        print(f"best accuracy {out['best_accuracy']:.4f} at iteration {out['best_iter']}, final "
              f"{out['final_accuracy']:.4f}, nfe {out['nfe']}, {seconds:.2f}s")
    return 0


def field_comments(cls) -> dict[str, str]:
    """A dataclass's fields' trailing comments (`name: type = default  # comment`), by field name: the one place
    an option is described is beside its field."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def add_train(sub) -> None:
    from ttc.engine.train import TrainConfig

    p = sub.add_parser("train", help="train a model and write a checkpoint with its card",
                       description="Every TrainConfig field is an option; its help is the field's comment.")
    d = TrainConfig()
    notes = field_comments(TrainConfig)
    for name, val in vars(d).items():
        flag = "--" + name.replace("_", "-")
        what = notes.get(name, "")
        if isinstance(val, list):
            p.add_argument(flag, type=_int_csv, default=val,
                           help=f"{what}; comma-separated integers (default: {','.join(map(str, val)) or 'none'})")
        elif isinstance(val, bool) or val is None:
            shown = "the family's" if val is None else str(val).lower()
            p.add_argument(flag, type=_bool, default=val, help=f"{what}; true or false (default: {shown})")
        else:
            shown = repr(val) if isinstance(val, str) and val else (val if val != "" else "none")
            p.add_argument(flag, type=type(val), default=val, help=f"{what} (default: {shown})")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors); an existing one is refused")
    p.add_argument("--force", action="store_true", help="replace an existing --out (never needed for a new path)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)


def cmd_train(a) -> int:
    from dataclasses import fields

    from ttc.engine.train import TrainConfig, check_out, train

    cfg = TrainConfig(**{f.name: getattr(a, f.name) for f in fields(TrainConfig)})
    check_out(a.out, a.force)
    cfg.family_option_values()
    import torch

    prec.resolve(cfg.precision, "cuda" if torch.cuda.is_available() else "cpu")  # the device train() picks
    check_train(vars(cfg))
    cfg.model_config()  # validates names and ranges before any work
    check_arch_dims(cfg.arch, get_task(cfg.task).spatial_dims, cfg.task)
    if not cfg.sizes:
        raise UsageError("--sizes needs at least one training size")
    for s in cfg.sizes + cfg.eval_sizes:
        get_task(cfg.task).sizes.check(cfg.task, s)
    check_train_cost(get_task(cfg.task), cfg.sizes, cfg.batch, cfg.layers, cfg.width,
                     cfg.validation_size(), cfg.validation_budget(), cfg.val_n)
    variants = [v for v in cfg.variants.split(",") if v]
    known = optional(get_task(cfg.task), "variants")
    bad = [v for v in variants if v not in known]
    if bad:
        raise UsageError(f"--variants {bad} unknown for task {cfg.task}; known: {', '.join(known) or 'none'}")
    command = "python -m ttc " + " ".join(shlex.quote(s) for s in sys.argv[1:])

    def show(ev: dict) -> None:
        if a.quiet:
            return
        if ev["event"] == "step":
            frac = ev["step"] / ev["steps"]
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r[{bar:<30}] {ev['step']}/{ev['steps']} loss {ev['loss']:.4f} acc {ev['acc']:.3f} "
                             f"{ev['samples_per_s']:.0f} samples/s {ev['elapsed']:.0f}s")
        elif ev["event"] == "val":
            sys.stderr.write(f"\n  val size {ev['val_size']}: best acc {ev['val_acc']:.4f} at iter {ev['val_iter']}\n")
        else:
            sys.stderr.write(f"\n  {ev}\n")
        sys.stderr.flush()

    card = train(cfg, out=a.out, on_event=show, command=command, force=a.force)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    if not a.quiet:
        sys.stderr.write(f"\nbest val {card['best_val']}\n")
    print(json.dumps({k: card[k] for k in ("train_seconds", "best_val", "steps_run") if k in card}))
    return 0


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


def add_memory(sub) -> None:
    p = sub.add_parser(
        "memory", help="training memory of a DEQ or EBM per mode and iteration count",
        description="Bytes autograd saves for backward in one training step (forward, loss, backward). A DEQ "
                    "checkpoint: unrolled backprop (exactly --iters solver steps on the graph), implicit "
                    "differentiation and Jacobian-free backprop (forward solve of up to --iters steps without a "
                    "graph). An EBM checkpoint: unrolled (training through all --iters descent steps, each a "
                    "differentiable gradient of the energy) and last (only the last step on the graph). On CUDA "
                    "also the peak allocated above the baseline.")
    p.add_argument("--checkpoint", required=True, help="a DEQ or EBM .safetensors checkpoint")
    p.add_argument("--size", type=int, required=True, help=f"problem size ({_size_help()})")
    p.add_argument("--iters", type=_int_list("--iters", 1, MAX_ITERS), default=[10, 100, 1000],
                   help=f"comma-separated iteration budgets, each 1..{MAX_ITERS} (default 10,100,1000)")
    p.add_argument("--modes", type=_csv_choices("--modes", memory_modes()), default=None,
                   help="comma-separated modes: a DEQ's unrolled,implicit,jfb or an EBM's unrolled,last (default: all "
                        "of the checkpoint's family)")
    p.add_argument("--batch", type=_int_in("--batch", 1, 1024), default=8, help="problems in the step, 1..1024")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=0)
    p.add_argument("--solver", choices=list(SOLVERS), default=None, help="DEQ solver (default: the model's)")
    p.add_argument("--tol", type=_float_in("--tol", 0, 1), default=None,
                   help="forward tolerance for implicit/jfb (unrolled always runs --iters steps)")
    add_run_options(p, "print a JSON list, one object per (mode, iters)", cmd_memory)


def cmd_memory(a) -> int:
    import torch

    from ttc.engine.memory import measure_step, memory_budget, unrolled_bytes_estimate
    from ttc.engine.probe import resolve_device

    ck = load_checkpoint(a.checkpoint)
    own = ck.model.memory_modes
    if not own:
        raise UsageError(f"memory modes apply to checkpoints whose family declares them (DEQ and EBM checkpoints, "
                         f"of the shipped ones); this one is {ck.family}")
    a.modes = a.modes or list(own)
    bad = [m for m in a.modes if m not in own]
    if bad:
        raise UsageError(f"--modes {','.join(bad)} do not apply to {ck.family} checkpoints; theirs: {','.join(own)}")
    if not ck.model.has_solver and (a.solver is not None or a.tol is not None):
        raise UsageError(f"--solver and --tol apply to solver families; {ck.family} has none")
    set_threads(a.threads)
    task = get_task(ck.task)
    size = task.sizes.check(task.name, a.size)
    check_cost(run_cost(task, size, a.batch, sum(a.iters) * len(a.modes), ck.config.width),
               "--batch, --size, --iters or --modes")
    dev = resolve_device(a.device)
    precision = precision_of(a, ck)
    model = ck.model.to(dev)
    xs, ys = task.generate(size, a.batch, a.seed)
    x = task.encode(torch.as_tensor(xs)).to(dev)
    y = torch.as_tensor(ys).long().to(dev)
    if "unrolled" in a.modes:
        need, budget = unrolled_bytes_estimate(model, x, y, max(a.iters), a.solver), memory_budget(dev)
        if need > budget:
            raise UsageError(f"unrolled at {max(a.iters)} iterations would save about {need / 2**30:.1f} GiB, over "
                             f"the {budget / 2**30:.1f} GiB this machine can spare; lower --batch, --size or --iters")
    rows = []
    with progress_bar(len(a.iters) * len(a.modes), "memory", a.quiet) as bar:
        for mode in a.modes:
            for k in a.iters:
                with prec.use(precision):
                    rows.append({**measure_step(model, x, y, mode, k, a.solver, a.tol), "precision": precision})
                bar.update(1)
    if a.json:
        print(json.dumps([{k: r[k] for k in ("mode", "iters", "saved_bytes", "peak_bytes", "seconds", "nfe",
                                             "precision")}
                          for r in rows]))
    else:
        print(f"{ck.name}: {task.name} size {size}, batch {a.batch}, {rows[0]['method']} on {a.device} in {precision}")
        for r in rows:
            peak = "" if r["peak_bytes"] is None else f", peak {r['peak_bytes'] / 2**20:.2f} MiB"
            print(f"  {r['mode']:>8} {r['iters']:>5} iters: saved {r['saved_bytes'] / 2**20:.2f} MiB{peak}, "
                  f"nfe {r['nfe']}, {r['seconds']:.2f}s")
    return 0


def add_measure(sub) -> None:
    p = sub.add_parser("measure", help="measure a checkpoint's accuracy table (sizes x budgets) into its card",
                       description="One row per size x budget on fresh test problems: accuracy at the budget, the "
                                   "best within it and where, and (looped families) the accuracy at 3x the best "
                                   "iteration. Prints the rows as JSON; --write puts them into the card.")
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint (its .json card beside it)")
    p.add_argument("--sizes", required=True, type=_int_list("--sizes", 1, 4096),
                   help=f"comma-separated problem sizes ({_size_help()})")
    p.add_argument("--iters", required=True, type=_int_list("--iters", 1, MAX_ITERS),
                   help=f"comma-separated budgets, each 1..{MAX_ITERS}")
    p.add_argument("--n", type=_int_in("--n", 1, MAX_N), default=200, help=f"problems per size, 1..{MAX_N}")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=None, help="default: the zoo's test seed")
    p.add_argument("--early-stop", action="store_true",
                   help="end a batch once every state has stopped changing; its accuracy is then held (rows say "
                        "where: settled_at)")
    p.add_argument("--batch", type=_int_in("--batch", 1, MAX_N), default=100, help="problems per forward batch")
    p.add_argument("--generator", default=None,
                   help="problem generator of the task (mazes: dfs, kruskal, prim, wilson, loops; default: the task's)")
    add_difficulty_arg(p)
    add_settings_args(p)
    add_precision_arg(p)
    add_threads_arg(p)
    p.add_argument("--write", action="store_true", help="write the rows into the card (.safetensors and .json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=cmd_measure)


def cmd_measure(a) -> int:
    from ttc.engine.zoo import TEST_SEED, measure_table, update_card

    ck = load_checkpoint(a.checkpoint)
    task = get_task(ck.task)
    for s in a.sizes:
        task.sizes.check(task.name, s)
    for s in a.sizes:
        check_cost(run_cost(task, s, a.n, max(a.iters), ck.config.width), "--n, --sizes or --iters")
    known = optional(task, "variants")
    if a.generator is not None and a.generator not in known:
        raise UsageError(f"--generator {a.generator[:40]!r} unknown for task {task.name}; known: "
                         f"{', '.join(known) or 'none'}")
    settings = run_settings(ck, a)
    precision = precision_of(a, ck, "cpu")
    if a.difficulty is not None:
        for sz in a.sizes:
            check_difficulty(task, sz, a.difficulty)
    set_threads(a.threads)
    with progress_bar(len(a.sizes), "measure (sizes)", a.quiet) as bar:
        rows = measure_table(ck, a.sizes, a.iters, n=a.n, seed=TEST_SEED if a.seed is None else a.seed,
                             settings=settings, variant=a.generator, on_size=lambda _s: bar.update(1),
                             early_stop=a.early_stop, batch=a.batch, precision=precision, difficulty=a.difficulty)
    if a.write:
        update_card(a.checkpoint, rows)
    print(json.dumps(rows))
    return 0


def add_analyze(sub) -> None:
    from ttc.engine.analyze import MAX_STARTS

    p = sub.add_parser(
        "analyze", help="path independence, fixed point vs best iterate, halting rules, breadth vs depth",
        description="One JSON object on one batch of fresh problems: path_independence (accuracy per initial state, "
                    "final-state distances, the asymptotic-alignment score of Anil et al. 2022), "
                    "fixed_point_vs_iterate (the run of starts x iters iterations from zeros against its best "
                    "iterate), halting (per-sample stopping rules: accuracy against mean iterations and NFE) and "
                    "breadth (best of N starts by final residual, or by an EBM's energy, against one run with the "
                    "same NFE; the verifier's AUROC separating right from wrong final answers). Runs "
                    f"(2 x starts - 1) x iters iterations in all; the cost cap ({MAX_COST:.0e}) applies to that total.")
    p.add_argument("--checkpoint", required=True, help="a looped (not fixed-depth) .safetensors checkpoint")
    p.add_argument("--size", type=int, default=None,
                   help=f"problem size ({_size_help()}); required unless --frontier")
    p.add_argument("--frontier", action="store_true",
                   help="analyse at the checkpoint's frontier: the smallest size (with --size: the smallest difficulty "
                        "at that size) where its best accuracy within --iters lies between 20%% and 90%%, found by "
                        "doubling from the training size (or difficulty 1) and bisecting; the result says what was "
                        "scanned")
    p.add_argument("--iters", type=_int_in("--iters", 1, MAX_ITERS), required=True,
                   help="iterations per start (the depth run gets starts x iters)")
    p.add_argument("--starts", type=_int_in("--starts", 1, MAX_STARTS), default=5,
                   help=f"initial states, 1..{MAX_STARTS}: zeros, noise x0.5, x1, x2, other problems' final states, "
                        "then larger noise")
    p.add_argument("--n", type=_int_in("--n", 1, MAX_N), default=200, help=f"problems, 1..{MAX_N}")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=0, help="problems and noise starts")
    add_difficulty_arg(p)
    p.add_argument("--write", action="store_true",
                   help="also put a compact result (breadth against N, the verifier's AUROC, AA score, fixed point) "
                        "into the checkpoint's card under \"analysis\"")
    add_settings_args(p)
    add_run_options(p, "print the JSON object (default: a short summary)", cmd_analyze)


def cmd_analyze(a) -> int:
    from ttc.engine.analyze import analyze

    ck = load_checkpoint(a.checkpoint)
    if ck.model.fixed_depth:
        raise UsageError(f"{ck.name} is a model of the {ck.family} family: its depth is fixed, there is no iteration "
                         "to analyse")
    task = get_task(ck.task)
    if a.size is None and not a.frontier:
        raise UsageError(f"--size is required without --frontier ({_size_help()})")
    if a.frontier and a.difficulty is not None:
        raise UsageError("--frontier finds the difficulty itself (with --size) or the size; drop --difficulty")
    size = task.sizes.check(task.name, a.size if a.size is not None else max(ck.train_sizes, default=task.train_size))
    check_data_bytes(task, size, a.n)
    total = (2 * a.starts - 1) * a.iters
    if a.starts * a.iters > MAX_ITERS:
        raise UsageError(f"--starts x --iters is {a.starts * a.iters}, the depth run's budget; at most {MAX_ITERS}")
    check_cost(run_cost(task, size, a.n, total, ck.config.width), "--n, --size, --iters or --starts")
    settings = run_settings(ck, a)
    precision = precision_of(a, ck)
    set_threads(a.threads)
    frontier = None
    if a.frontier:
        from ttc.engine.frontier import find_frontier

        knob = "difficulty" if a.size is not None else "size"
        if knob == "difficulty" and not hasattr(task, "difficulty_range"):
            raise UsageError(f"{task.name} problems cannot be drawn at a difficulty; drop --size to scan sizes")
        say = _progress(a.quiet)
        frontier = find_frontier(ck.model, task, 1 if knob == "difficulty" else size, a.iters, n=a.n, seed=a.seed,
                                 precision=precision, settings=settings, difficulty_at=size if knob == "difficulty"
                                 else None, on_size=lambda v, acc: say(f"frontier: {knob} {v}: best {acc:.1%}"))
        frontier["knob"] = knob
        if knob == "size":
            size = frontier["value"]
            check_data_bytes(task, size, a.n)
            check_cost(run_cost(task, size, a.n, total, ck.config.width), "--n, --iters or --starts")
        else:
            a.difficulty = frontier["value"]
    x, y = draw(task, size, a.n, a.seed, a.difficulty)
    with progress_bar(total, "analyze", a.quiet) as bar:
        out = analyze(ck.model, task, x, y, a.iters, starts=a.starts, seed=a.seed, device=a.device,
                      settings=settings, on_iter=bar.update, precision=precision)
    result = {"checkpoint": ck.name, "task": task.name, "family": ck.family, "size": size, "n": int(len(x)),
              "iters": a.iters, "starts": a.starts, "seed": a.seed, "difficulty": a.difficulty, "precision": precision,
              "frontier": frontier, **out}
    if a.write:
        from ttc.engine.zoo import write_analysis

        write_analysis(a.checkpoint, result, "python -m ttc " + " ".join(shlex.quote(v) for v in sys.argv[1:]))
    if a.json:
        print(json.dumps(result))
        return 0
    pi, fp, br = out["path_independence"], out["fixed_point_vs_iterate"], out["breadth"]["points"]
    if frontier is not None:
        print(f"frontier: {frontier['knob']} {frontier['value']} (best {frontier['best_accuracy']:.1%}"
              + ("" if frontier["in_band"] else ", none of the scanned values was in the 20-90% band") + "); scanned "
              + ", ".join(f"{v}: {acc:.0%}" for v, acc in frontier["scanned"]))
    print(f"{ck.name}: {task.name} size {size}" + (f", difficulty {a.difficulty}" if a.difficulty is not None else "")
          + f", n={len(x)}, {a.iters} iterations x {a.starts} starts")
    print(f"path independence: AA score {pi['aa_score']:.4f}; final accuracy per start: "
          + ", ".join(f"{s['start']} {s['final_accuracy']:.3f}" for s in pi["starts"]))
    print(f"fixed point (iteration {fp['iters']}): {fp['fixed_point_accuracy']:.3f}; best iterate "
          f"{fp['best_iterate_accuracy']:.3f} at {fp['best_iter']}; settled {fp['settled_fraction']:.2f}")
    for h in out["halting"]["rules"]:
        print(f"halting {h['rule']} {h['value']:g}: accuracy {h['accuracy']:.3f} at {h['mean_iters']:.1f} "
              f"iterations on average")
    last = br[-1]
    print(f"breadth {last['starts']} starts ({last['nfe']} NFE): {last['breadth_accuracy']:.3f}; depth at the same "
          f"NFE: {last['depth_accuracy']:.3f}")
    print("breadth accuracy against N starts (best by " + out["breadth"]["verifier"] + "): "
          + ", ".join(f"{p['starts']}: {p['breadth_accuracy']:.3f}" for p in br))
    au = out["breadth"]["verifier_auroc"]
    print(f"{out['breadth']['verifier']} as a verifier: AUROC "
          + (f"{au:.3f}" if au is not None else "undefined (every final answer right, or every one wrong)")
          + f" over {out['breadth']['verifier_n']} final answers ({out['breadth']['verifier_right']} right)")
    return 0


COMMANDS = [add_data, add_eval, add_train, add_measure, add_memory, add_analyze]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ttc", description="TTC Lab: test-time compute for explicit, recursive, DEQ, "
                                                 "energy-based and external-memory models (and plugin families)")
    sub = p.add_subparsers(dest="cmd", required=False, parser_class=Parser, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "cmd", None) is None:  # no command: say which there are (exit 2, as any usage error)
        names = [a for a in parser._subparsers._group_actions[0].choices]
        sys.stderr.write(f"error: a command is required: {', '.join(names)} (python -m ttc COMMAND --help)\n")
        return 2
    try:
        return args.run(args)
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


def _progress(quiet: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if not quiet:
            sys.stderr.write(f"  {msg}\n")
            sys.stderr.flush()
    return say


def add_bench(sub) -> None:
    from ttc.tools.bench import GROUPS

    p = sub.add_parser(
        "bench", help="benchmarks as ratios: instrumentation, solvers, memory, throughput, dashboard",
        description="Measured side by side in one process and reported as ratios (min / median / max over repeats), "
                    "each entry saying what it compares: probe overhead vs a bare stream loop, Anderson vs fixed "
                    "point and vs torchdeq on each DEQ checkpoint (a random DEQ when there is none), implicit vs "
                    "unrolled training memory, iterations/s at the training size and 4x, and the dashboard's warm "
                    "time. --quick finishes in under a minute (CI).")
    p.add_argument("--quick", action="store_true", help="fewer repeats, small batches, one checkpoint per group")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (default: $TTC_CHECKPOINTS or checkpoints/)")
    p.add_argument("--groups", type=_csv_choices("--groups", GROUPS), default=list(GROUPS),
                   help=f"comma-separated subset of {','.join(GROUPS)} (default all)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda when present")
    p.add_argument("--precision", choices=list(prec.PRECISIONS), default="auto",
                   help="the precision of every group but `precision` (which runs fp32 and bf16 side by side): auto "
                        "(here: " + prec.describe("cpu") + "), fp32 or bf16")
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(run=cmd_bench)


def cmd_bench(a) -> int:

    from ttc.app.catalog import checkpoint_folder
    from ttc.tools.bench import format_table, run_bench

    set_threads(a.threads)
    folder = a.checkpoints or str(checkpoint_folder())
    result = run_bench(quick=a.quick, folder=folder, device=a.device, groups=tuple(a.groups),
                       on_event=_progress(a.quiet), precision=precision_of(a))
    print(json.dumps(result) if a.json else "\n".join(format_table(result)))
    return 0


def add_report(sub) -> None:
    from ttc.tools.report import FORMATS

    p = sub.add_parser(
        "report", help="findings: accuracy vs iterations and size, iterations needed vs size, residuals, memory",
        description="For each task: accuracy vs iterations of every checkpoint at the training size, 4x and 16x "
                    "(or the largest size within the cost cap), the iterations needed for the best accuracy as the "
                    "size grows, residual curves, and the DEQ memory table. Writes figures (PNG/SVG/HTML), "
                    "results.json and summary.md into --out. About 26 minutes on 2 CPU cores for the shipped zoo; "
                    "--quick: a few minutes.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (default: $TTC_CHECKPOINTS or checkpoints/)")
    p.add_argument("--tasks", type=_csv_choices("--tasks", tuple(TASKS)), default=None,
                   help=f"comma-separated subset of {','.join(TASKS)} (default: every task with a checkpoint)")
    p.add_argument("--formats", type=_csv_choices("--formats", FORMATS), default=list(FORMATS),
                   help=f"figure formats, comma-separated subset of {','.join(FORMATS)} (default all)")
    p.add_argument("--quick", action="store_true", help="fewer sizes, problems and iterations")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda when present")
    add_precision_arg(p)
    add_threads_arg(p)
    p.add_argument("--from-results", default=None, metavar="RESULTS_JSON",
                   help="run nothing: draw the figures and summary again from an earlier run's results.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(run=cmd_report)


def cmd_report(a) -> int:

    from ttc.app.catalog import checkpoint_folder
    from ttc.tools.report import FORMATS, render, run_report

    if a.from_results:
        try:
            results = json.loads(open(a.from_results).read())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read results {a.from_results!r}: {e}") from None
        if not isinstance(results, dict) or not {"tasks", "memory", "config"} <= set(results):
            raise UsageError(f"{a.from_results!r} is not a results.json written by python -m ttc report")
        fmts = "" if list(a.formats) == list(FORMATS) else f" --formats {','.join(a.formats)}"
        results["rendered_by"] = f"python -m ttc report --out {a.out} --from-results {a.from_results}{fmts}"
        try:
            render(results, a.out, tuple(a.formats))
        except OSError as e:
            raise UsageError(f"cannot write the report to {a.out!r}: {e.strerror or e}") from None
        print(f"report: {os.path.join(a.out, 'summary.md')} (rendered from {a.from_results})")
        return 0
    set_threads(a.threads)
    folder = a.checkpoints or str(checkpoint_folder())
    args = ["report", "--out", a.out] + (["--checkpoints", a.checkpoints] if a.checkpoints else [])
    args += (["--tasks", ",".join(a.tasks)] if a.tasks else []) + (["--quick"] if a.quick else [])
    args += [] if list(a.formats) == list(FORMATS) else ["--formats", ",".join(a.formats)]
    args += ["--device", a.device] + (["--threads", str(a.threads)] if a.threads else [])
    args += ["--precision", a.precision]
    precision_of(a)  # bf16 on a device without it: refused before any work
    command = "python -m ttc " + " ".join(shlex.quote(s) for s in args)
    try:
        res = run_report(a.out, folder=folder, tasks=a.tasks, quick=a.quick, formats=tuple(a.formats),
                         device=a.device, on_event=_progress(a.quiet), command=command, precision=a.precision)
    except OSError as e:
        raise UsageError(f"cannot write the report to {a.out!r}: {e.strerror or e}") from None
    print(f"report: {os.path.join(a.out, 'summary.md')} ({len(res['tasks'])} tasks, {res['seconds'] / 60:.1f} min)")
    for note in res["figure_notes"]:
        print(f"note: {note}")
    return 0


COMMANDS += [add_bench, add_report]
