"""`python -m ttc memory`: training memory per backward mode against iterations."""

from __future__ import annotations

import json

from models import UNROLLED
from models import precision as prec
from models.solvers import SOLVERS
from tasks import get_task, tensors
from ttc.engine.checkpoint import load_checkpoint
from ttc.engine.memory import all_modes as memory_modes
from ttc.engine.probe import MAX_ITERS
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import (
    UsageError,
    _csv_choices,
    _float_in,
    _int_in,
    _int_list,
    _size_help,
    add_run_options,
    check_run_cost,
    precision_of,
    progress_bar,
)


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
    check_run_cost(a, task, size, a.batch, sum(a.iters) * len(a.modes), ck.config.width,
                   "--batch, --size, --iters or --modes")
    dev = resolve_device(a.device)
    precision = precision_of(a, ck)
    model = ck.model.to(dev)
    xs, ys = task.generate(size, a.batch, a.seed)
    x, y = tensors(task, xs, ys, dev)
    if UNROLLED in a.modes:
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

