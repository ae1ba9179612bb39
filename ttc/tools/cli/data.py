"""`python -m ttc data`: problems to an .npz file."""

from __future__ import annotations

from tasks import TASKS, get_task, save_npz
from tasks.difficulty import draw
from ttc.tools.cli.common import (
    MAX_DATA_BYTES,
    MAX_N,
    UsageError,
    _int_in,
    _size_help,
    add_difficulty_arg,
    check_data_bytes,
)


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

