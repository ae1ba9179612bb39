"""Groups `throughput` (iterations per second at the training size and 4x) and `stop` (how fast a run stops)."""

from __future__ import annotations

import time

import torch

from tasks import get_task
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.zoo import scaled_size, training_size
from ttc.tools.bench.common import BenchConfig, _probe_run, _timed, entry, skipped, spread


def bench_throughput(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Iterations per second of an instrumented run at the training size and at 4x (DEQs: every iteration a
    real solver step, tol 0). The ratio is 4x / training size."""
    base = training_size(ck)
    big = scaled_size(ck.task, base, 4)
    iters = cfg.throughput_iters
    settings = ck.model.settings.run_to_budget()
    model = ck.model.to(dev).eval()
    per_size: dict[int, list[float]] = {base: [], big: []}
    runs = {size: _probe_run(model, ck.task, size, cfg.n, iters, dev, settings) for size in (base, big)}
    done = {size: run() for size, run in runs.items()}  # warm-up; explicit models yield their depth
    for _ in range(max(3, cfg.repeats // 3)):
        for size in (base, big):
            w, _ = _timed(runs[size], dev)
            per_size[size].append(done[size] / w)
    ratios = [b / a for a, b in zip(per_size[base], per_size[big], strict=True)]
    return entry("throughput", f"throughput: {ck.name}",
                 f"iterations per second at 4x the training size ({big}) / at the training size ({base}), "
                 f"{cfg.n} problems per batch, instrumented", ratios,
                 iterations_per_second={str(base): spread(per_size[base]), str(big): spread(per_size[big])},
                 problem_iterations_per_second={str(s): spread([v * cfg.n for v in vs]) for s, vs in per_size.items()},
                 setup={"checkpoint": ck.name, "family": ck.family, "task": ck.task, "sizes": [base, big],
                        "n": cfg.n, "iters": done[base], "device": dev.type})


def bench_stop(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Stop latency on the server, the number the browser tests record but never bound: the Explore page checks
    for a Stop at every live frame (a Stop reruns the script, which ends the loop at its next Streamlit call),
    so the latency is at most the gap between two frames. A live run (LiveRun) with the page's frame rule and
    its live figure built at every frame, at 16x the dashboard's size; the ratio is the longest gap between
    frames over the frame interval the page aims for."""
    from ttc.app import plots
    from ttc.app.settings import RunSettings
    from ttc.app.trace import LIVE_FRAME_SECONDS, LiveRun

    size = scaled_size(ck.task, get_task(ck.task).dashboard_size, 2 if cfg.quick else 16)
    n, budget = (16, 300) if cfg.quick else (200, 300)
    s = RunSettings(ck.task, ck.name, size, n, budget, 0, device=dev.type)
    worst, gaps = [], []
    for _ in range(1 if cfg.quick else 3):
        run, last, frames, live = LiveRun(ck, s), time.perf_counter(), [], None
        for _ in run:
            now = time.perf_counter()
            if now - last >= LIVE_FRAME_SECONDS:  # a frame as Explore draws it: one figure per run, its data replaced
                t = run.trace(maps=False)
                if live is None:
                    live = plots.LiveFigure(ck.name, t)  # built with t's data
                else:
                    live.update(t)
                frames.append(time.perf_counter() - last)
                last = time.perf_counter()
        if frames:
            worst.append(max(frames))
            gaps += frames
    if not worst:
        return skipped("stop", "stop latency (server)", "longest gap between two live frames / the frame interval",
                       "the run ended before its first frame")
    return entry("stop", f"stop latency (server): {ck.name}",
                 f"longest gap between two live frames (where a Stop takes effect) / the page's frame interval "
                 f"{LIVE_FRAME_SECONDS} s; {n} problems of size {size}, budget {budget}", [w / LIVE_FRAME_SECONDS
                                                                                         for w in worst],
                 frame_gap_seconds=spread(gaps), longest_gap_seconds=spread(worst),
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "n": n, "budget": budget,
                        "device": dev.type},
                 note="a browser adds the rerun's round trip; tests/browser/test_browser.py prints the "
                      "click-to-message time")

