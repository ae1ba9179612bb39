"""`python -m ttc measure`: a checkpoint's accuracy table over sizes and budgets."""

from __future__ import annotations

import json

from tasks import get_task, optional
from tasks.difficulty import check_difficulty
from ttc.engine.checkpoint import load_checkpoint
from ttc.engine.probe import MAX_ITERS
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import (
    MAX_N,
    UsageError,
    _int_in,
    _int_list,
    _size_help,
    add_cost_arg,
    add_difficulty_arg,
    add_precision_arg,
    add_settings_args,
    add_threads_arg,
    check_run_cost,
    precision_of,
    progress_bar,
    run_settings,
)


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
    add_cost_arg(p)
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
        check_run_cost(a, task, s, a.n, max(a.iters), ck.config.width, "--n, --sizes or --iters")
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

