"""`python -m ttc report`: the findings report (ttc.tools.report) as a command."""

from __future__ import annotations

import os
import shlex

from tasks import TASKS
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import UsageError, _csv_choices, _progress, add_precision_arg, add_threads_arg, precision_of


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
    p.add_argument("--update", action="store_true",
                   help="run only --tasks and keep every other task's results from the report already in --out "
                        "(its results.json); the summary says which command made which tasks")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(run=cmd_report)


def cmd_report(a) -> int:

    from ttc.app.catalog import checkpoint_folder
    from ttc.tools.report import FORMATS, read_results, render, run_report

    if a.from_results and a.update:
        raise UsageError("--update reruns tasks; --from-results runs nothing: pass one of them")
    if a.from_results or a.update:
        try:
            results = read_results(a.from_results or os.path.join(a.out, "results.json"))
        except ValueError as e:
            raise UsageError(f"{e}{'' if a.from_results else ' (--update merges into the report in --out)'}") from None
    if a.from_results:
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
    args += ["--precision", a.precision] + (["--update"] if a.update else [])
    precision_of(a)  # bf16 on a device without it: refused before any work
    command = "python -m ttc " + " ".join(shlex.quote(s) for s in args)
    try:
        res = run_report(a.out, folder=folder, tasks=a.tasks, quick=a.quick, formats=tuple(a.formats),
                         device=a.device, on_event=_progress(a.quiet), command=command, precision=a.precision,
                         update=a.update)
    except OSError as e:
        raise UsageError(f"cannot write the report to {a.out!r}: {e.strerror or e}") from None
    print(f"report: {os.path.join(a.out, 'summary.md')} ({len(res['tasks'])} tasks, {res['seconds'] / 60:.1f} min)")
    for note in res["figure_notes"]:
        print(f"note: {note}")
    return 0

