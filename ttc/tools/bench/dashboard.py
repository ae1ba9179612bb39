"""Group `dashboard`: the Explore page's warm rerun through Streamlit's AppTest against the same run computed bare."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from tasks import get_task
from ttc.engine import runtime
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.zoo import scaled_size
from ttc.tools.bench.common import BenchConfig, _dashboard_rank, entry, skipped, spread


def bench_dashboard(cks: list[Checkpoint], folder: Path, cfg: BenchConfig) -> dict:
    """Explore page, warm (the checkpoint loaded, the page run once), in-process through Streamlit's AppTest
    (no browser): after a settings change (the problem size), the seconds to the first chart the page emits
    (the headline number) and to the end of the rerun; the ratio is the rerun against the same run computed
    without the app (ttc.app.trace.compute_trace), the cost of the live drawing. scripts/measure_app.py measures
    the same change in a real browser (a script, not importable: run it for browser numbers)."""
    compares = ("Explore, warm, after a size change (Streamlit AppTest, server side, no browser): seconds of the "
                "page's whole rerun / seconds to compute the same run without the app")
    try:
        from streamlit.testing.v1 import AppTest
    except ImportError:
        return skipped("dashboard", "dashboard warm time", compares, "streamlit is not installed")
    if not cks:
        return skipped("dashboard", "dashboard warm time", compares, f"no checkpoint in {folder}")
    from ttc.app.catalog import ENV_FOLDER
    from ttc.app.settings import RunSettings
    from ttc.app.trace import compute_trace

    ck = min(cks, key=_dashboard_rank)  # what the app opens on: the first task's default checkpoint
    task = get_task(ck.task)
    base = task.dashboard_size
    sizes = [scaled_size(ck.task, base, 1 + 0.25 * (i + 1)) for i in range(cfg.dashboard_repeats)]
    app = str(runtime.project_root() / "app.py")
    old_env = os.environ.get(ENV_FOLDER)
    os.environ[ENV_FOLDER] = str(folder)
    fulls, computes = [], []
    try:
        with _quiet_bare_mode():
            at = AppTest.from_file(app, default_timeout=300)
        at.query_params = {"task": ck.task, "checkpoint": ck.name, "size": str(base), "n": str(cfg.dashboard_n),
                           "budget": str(cfg.dashboard_budget), "seed": "0"}
        at.run()  # cold: imports, checkpoint validation, the first run
        if at.exception:
            return skipped("dashboard", "dashboard warm time", compares,
                           f"the Explore page raised: {at.exception[0].value}")
        for size in sizes:
            t0 = time.perf_counter()
            at.number_input(key="w_size").set_value(size).run()
            t1 = time.perf_counter()
            if at.exception or not at.get("plotly_chart"):
                return skipped("dashboard", "dashboard warm time", compares, "the page drew no chart after a change")
            s = RunSettings(**at.session_state["settings"])
            c0 = time.perf_counter()
            compute_trace(ck, s)
            computes.append(time.perf_counter() - c0)
            fulls.append(t1 - t0)
    finally:
        if old_env is None:
            os.environ.pop(ENV_FOLDER, None)
        else:
            os.environ[ENV_FOLDER] = old_env
    return entry("dashboard", "dashboard warm time", compares,
                 [f / c for f, c in zip(fulls, computes, strict=True)],
                 rerun_seconds=spread(fulls), compute_seconds=spread(computes),
                 setup={"checkpoint": ck.name, "task": task.name, "sizes": sizes, "n": cfg.dashboard_n,
                        "budget": cfg.dashboard_budget, "page": "Explore"},
                 note="through Streamlit's public AppTest API (server side); a browser adds transfer and rendering "
                      "on top: scripts/measure_app.py measures it in Chromium")


@contextlib.contextmanager
def _quiet_bare_mode():
    """Streamlit's AppTest.from_file logs "missing ScriptRunContext ... can be ignored when running in bare mode"
    on its way to setting up the test's own context: expected here, and kept out of the bench's output."""
    log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
