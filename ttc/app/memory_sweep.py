"""The Memory page's sweep: training memory of a checkpoint whose family declares memory modes, per mode and
iteration count, one (mode, iters) measurement at a time (so a page can fill its chart progressively), and the
comparison written out in words. The measurement itself is `ttc.engine.memory.measure_step`."""

from __future__ import annotations

import copy

import torch

from models import UNROLLED
from tasks import get_task, tensors
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.memory import measure_step, memory_budget, unrolled_bytes_estimate

ITERS_OPTIONS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_ITERS = (5, 10, 20, 50, 100)
BATCH_MAX = 64


def _batch(ck: Checkpoint, size: int, batch: int, seed: int, device: str):
    task = get_task(ck.task)
    return tensors(task, *task.generate(size, batch, seed), torch.device(device))


def measure_one(ck: Checkpoint, size: int, batch: int, seed: int, mode: str, iters: int, device: str) -> dict:
    """One training step's memory (the `python -m ttc memory` object) on a private copy of the model, so
    a run on another page is never disturbed by the step switching the model to training mode."""
    model = copy.deepcopy(ck.model).to(device)
    x, y = _batch(ck, size, batch, seed, device)
    row = measure_step(model, x, y, mode, iters)
    return {k: row[k] for k in ("mode", "iters", "saved_bytes", "peak_bytes", "seconds", "nfe")}


def unrolled_limit(ck: Checkpoint, size: int, batch: int, seed: int, iters: list[int], device: str) -> int | None:
    """The largest of `iters` whose unrolled step fits this machine's memory (None when none does)."""
    model = copy.deepcopy(ck.model).to(device)
    x, y = _batch(ck, size, batch, seed, device)
    budget = memory_budget(torch.device(device))
    fits = [k for k in sorted(iters) if unrolled_bytes_estimate(model, x, y, k) <= budget]
    return fits[-1] if fits else None


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB"


def ratio_notes(rows: list[dict], key: str = "saved_bytes") -> list[str]:
    """At every iteration count measured for unrolled and another mode: how many times more the unrolled
    step keeps than each other mode measured (a DEQ's implicit and JFB, an EBM's last-step descent)."""
    by = {(r["mode"], r["iters"]): r[key] for r in rows if r.get(key) is not None}
    notes = []
    for k in sorted({it for mode, it in by if mode == UNROLLED}):
        parts = [f"unrolled keeps {_mib(by[UNROLLED, k])}"]
        for other in dict.fromkeys(m for m, _ in by if m != UNROLLED):
            if (other, k) in by:
                ratio = by[UNROLLED, k] / by[other, k] if by[other, k] else float("inf")
                parts.append(f"{other} {_mib(by[other, k])} ({ratio:,.1f}x less)")
        notes.append(f"{k} iterations: " + ", ".join(parts) + ".")
    return notes
