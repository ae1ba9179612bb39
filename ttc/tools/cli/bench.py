"""`python -m ttc bench`: the benchmarks (ttc.tools.bench) as a command."""

from __future__ import annotations

import json

from models import precision as prec
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import _csv_choices, _progress, add_threads_arg, precision_of


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

