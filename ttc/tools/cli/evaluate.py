"""`python -m ttc eval`: a checkpoint on fresh or saved problems, accuracy and residual per iteration."""

from __future__ import annotations

import json

from tasks import get_task, load_npz
from tasks.difficulty import draw
from tasks.difficulty import main_name as difficulty_main
from tasks.difficulty import measure as difficulty_measures
from ttc.engine.checkpoint import checkpoint_task, load_checkpoint
from ttc.engine.evaluate import evaluate
from ttc.engine.limits import MAX_COST
from ttc.engine.probe import MAX_ITERS
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import (
    MAX_DATA_BYTES,
    MAX_N,
    UsageError,
    _int_in,
    _size_help,
    add_cost_arg,
    add_difficulty_arg,
    add_precision_arg,
    add_settings_args,
    add_threads_arg,
    check_data_bytes,
    check_run_cost,
    precision_of,
    progress_bar,
    run_settings,
)


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint, accuracy and residual per iteration",
        description=f"Ranges: --size per task ({_size_help()}); --n 1..{MAX_N}; --iters 1..{MAX_ITERS}; "
                    f"--tol in (0, 1); the problems' inputs and targets at most {MAX_DATA_BYTES} bytes; the run cost "
                    f"problems x cells x iterations x width^2 at most --max-cost (default {MAX_COST:.0e}).")
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
    add_cost_arg(p)
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (the eval contract)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=cmd_eval)


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
        check_run_cost(a, task, size, a.n, a.iters, ck.config.width, "--n, --size or --iters")  # before generating
        x, y = draw(task, size, a.n, a.seed, a.difficulty)
    settings = run_settings(ck, a)
    check_run_cost(a, task, size, len(x), a.iters, ck.config.width, "--n (or the --data file), --size or --iters")
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

