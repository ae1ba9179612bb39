"""Instrumented runs: a model, a batch of problems and a budget -> one record per iteration.

This stream is what the CLI, the tests and the dashboard consume. Records carry per-sample data
(correctness, residual, convergence) so nothing is averaged away before the caller decides.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from models import IterativeModel
from models import precision as prec
from models.base import tensor_bytes
from tasks import Task, optional, tensors
from ttc.engine.records import Books, IterRecord, Waiting, _grad_mode

MAX_ITERS = 5000
# On the CPU records are made in batches (FLUSH_S seconds of iterations, at most FLUSH_MAX of them, FLUSH_BYTES of
# their logits and states): a host call between two iterations costs several times what it costs in a tight loop.
# Why, and what it saved: docs/performance.md, "Instrumentation".
FLUSH_S = 0.05
FLUSH_MAX = 256
FLUSH_BYTES = 16 * 2**20  # and at most this many bytes of their logits and waiting states
# Pipelining (opt-in: $TTC_PROBE_PIPELINE=1, when torch leaves a core of this process spare; True/False: always/
# never, for tests): a worker thread prepares a batch's records while the run computes the next. Off by default:
# it did not pay on the 2-core machine (docs/performance.md, "Instrumentation").
PIPELINE: bool | None = None
_worker: ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()


def _spare_core() -> ThreadPoolExecutor | None:
    """The process's probe worker (one thread, shared by every run), or None when no core is spare."""
    global _worker
    use = PIPELINE
    if use is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        use = os.environ.get("TTC_PROBE_PIPELINE") == "1" and torch.get_num_threads() < cpus
    if not use:
        return None
    with _worker_lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-probe")
        return _worker




def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda")
    return torch.device(device)

















def probe(model: IterativeModel, task: Task, inputs: np.ndarray, targets: np.ndarray, iters: int,
          device: str | torch.device | None = "cpu", early_stop: bool = False, tol: float | None = None,
          settings=None, z0: torch.Tensor | None = None, keep_state: bool = False,
          maps_for: int = 0, cell_error: bool = False, precision: str | None = None,
          conf_for: int = 0) -> Iterator[IterRecord]:
    """Yield one IterRecord per iteration of `model` on the problems.

    settings are the family's run settings (None: the model's own). For families without their own residual
    (explicit, recursive) the residual is ||z_k - z_{k-1}|| / ||z_k||, a sample is converged once it falls below
    tol (default 1e-4) and diverged once z turns non-finite. A family that stops by its own tolerance (DEQ solvers,
    an EBM's descent: its Settings.with_stop_tolerance)
    gets tol, when given, there, and reports its own residual and stops. With early_stop, the run ends once no
    sample is still running. A family that `needs_grad` runs with autograd on, others in inference mode.
    maps_for: copy the family's per-iteration maps (memory read/write weights) of the first that many samples.
    cell_error: also report the fraction of the batch wrong at each output cell (the front of the computation).
    conf_for: also report each cell's confidence (the predicted class's probability) for the first that many samples
    (a sudoku grid's inspector shows it).
    precision: "fp32" or "bf16" (resolved; `models.precision.resolve` turns "auto" into one), the cores' compute
    precision (None: the calling thread's, `models.precision.use`); states, residuals and solvers stay float32.
    2-D problems run channels-last in both. A bf16 run refines: it switches to float32 from the first record whose
    median relative residual is below models.precision.REFINE_BELOW (2e-2; a bf16 state's relative change cannot
    fall much below 0.4%: docs/precision.md), so residuals and convergence below it are float32 numbers in either
    precision; each record says which precision computed it.
    On the CPU records come in batches (see FLUSH_S), at least every FLUSH_S seconds of computing; a record's
    `elapsed` is the time the run computed until its iteration ended, whenever the record is handed over.
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if not 1 <= iters <= MAX_ITERS:
        raise ValueError(f"iteration budget {iters} out of range; accepted: 1..{MAX_ITERS}")
    settings = model.run_settings(settings)
    if tol is not None:
        settings = settings.with_stop_tolerance(tol)  # a family that stops by its own tolerance takes it
    tol = 1e-4 if tol is None else tol
    model = _on(model, dev)
    if precision is None:
        precision = prec.current()
    if precision not in ("fp32", "bf16"):
        raise prec.PrecisionError(f"probe takes a resolved precision (fp32 or bf16), got {precision!r}")
    x, y = tensors(task, inputs, targets, dev)
    model, x = prec.layout(model, x)
    mask_fn = optional(task, "cell_mask")
    mask = mask_fn(x) if mask_fn is not None else None  # cells a prediction is read at (mazes: open cells)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
    books = Books(y, mask, cuda, tol, precision, cell_error, conf_for, 0 if cuda else tensor_bytes(x, y))
    # Iterations wait in a batch (what their records need; on the CPU their logits) until a flush makes their
    # records; without early_stop, the convergence bookkeeping waits with them (see FLUSH_S). Without early stop,
    # the run needs nothing from an iteration on the CPU until the flush: its states wait too and are measured
    # there, back to back (a state must not change in place once yielded; none does). With pipelining on
    # (opt-in, see PIPELINE), a batch is prepared on a spare core while the run goes on, and its records are made
    # at the next flush.
    batch: list[Waiting] = []
    batch_logits: list[torch.Tensor] = []
    batch_bytes = 0
    run_precision = [precision]  # a bf16 run's precision, switched to fp32 near the fixed point (read per iteration)
    defer = not cuda and not early_stop
    worker = _spare_core() if defer else None
    in_flight = None  # the batch being prepared on the spare core
    spent, resumed = 0.0, time.perf_counter()  # seconds the run computed; when it last took over from its consumer
    flushed = resumed
    z_prev = None
    last_k = 0
    with _grad_mode(model):
        stream = model.stream(x, iters, z0=None if z0 is None else z0.to(dev), settings=settings)
        for st in prec.scoped(stream, lambda: run_precision[0]):
            last_k = st.k
            z, logits = st.z, st.logits
            w = _waiting(st, books, dev, z_prev, maps_for, keep_state, spent + time.perf_counter() - resumed)
            zf = w.zf
            if not defer:
                w.host, w.finite = books.measure(st, zf, z_prev)
                # early stop decides after every iteration; otherwise the bookkeeping waits for the flush
                w.settled = books.settle_now(w) if early_stop or cuda else None
            batch.append(w)
            if zf is not None:
                z_prev = zf
            if not cuda:
                batch_logits.append(logits)
                batch_bytes += logits.nbytes + (z.nbytes if defer else 0)
            done = early_stop and bool((books.conv | books.div).all())
            if (cuda or done or len(batch) >= FLUSH_MAX or batch_bytes >= FLUSH_BYTES
                    or time.perf_counter() - flushed >= FLUSH_S):
                ready, in_flight = _flush(books, model, batch, batch_logits, worker, in_flight)
                batch, batch_logits, batch_bytes = [], [], 0
                for rec in books.records(ready) if ready else ():
                    _refine_near_fixed_point(books, rec, run_precision, last_k)
                    spent += time.perf_counter() - resumed
                    yield rec
                    resumed = time.perf_counter()
                flushed = time.perf_counter()
            if done:
                return
    # the stream ended: the batch on the spare core, then the last one
    if in_flight is not None:
        yield from books.records(in_flight.result())
    if batch:
        yield from books.records(batch if cuda else books.prepare(model, batch, batch_logits))


def _waiting(st, books: Books, dev: torch.device, z_prev: torch.Tensor | None, maps_for: int, keep_state: bool,
             elapsed: float) -> Waiting:
    """An iteration as it waits for its record: its state flattened per sample (None when the family reports its
    own residual), the memory figure (on a GPU the allocator's count, no synchronisation; on the CPU the run's
    tensors), the shown problems' maps."""
    zf = None
    if st.residual is None:
        zf = st.z.flatten(1)
        if zf.requires_grad:
            zf = zf.detach()
    mem = torch.cuda.memory_allocated(dev) if books.cuda else (
        books.fixed_bytes + st.z.nbytes + st.logits.nbytes + st.held_bytes + (0 if z_prev is None else z_prev.nbytes))
    maps = {k: v[:maps_for] for k, v in st.maps.items()} if maps_for > 0 and st.maps else None
    return Waiting(st.k, st.nfe, mem, elapsed, st.series or None, maps, st.z if keep_state else None, st, zf, z_prev)


def _flush(books: Books, model: IterativeModel, items: list[Waiting], logits: list[torch.Tensor], worker,
           in_flight) -> tuple[list[Waiting] | None, object]:
    """(the iterations whose records can be made now, the batch now on the spare core): on a GPU the batch itself;
    with a spare core the batch it prepared meanwhile, while it takes this one; else this one, prepared now."""
    if books.cuda:
        return items, in_flight
    if worker is not None:  # this batch queued behind the one in flight, then that one's result awaited
        queued = worker.submit(books.prepare, model, items, logits)
        return (None if in_flight is None else in_flight.result()), queued
    return books.prepare(model, items, logits), in_flight


def _on(model: IterativeModel, dev: torch.device) -> IterativeModel:
    """The model on `dev` in eval mode, moved and switched only when needed: .to() and .eval() walk every module
    (30 blocks in an explicit model), which cost about a tenth of a short run's time and changed a shared model
    needlessly; even finding the first parameter walks them all, so the device is read off the readout head
    every family has."""
    readout = getattr(model, "readout", None)
    first = next(readout.parameters(), None) if isinstance(readout, torch.nn.Module) else None
    if first is None:
        first = next(model.parameters(), None)
    if first is not None and first.device != dev:
        model = model.to(dev)
    return model.eval() if model.training else model


def _refine_near_fixed_point(books: Books, rec: IterRecord, run_precision: list[str], last_k: int) -> None:
    """A bf16 run switches to float32 from the next iteration once the record's median residual is below
    models.precision.REFINE_BELOW (see probe)."""
    if run_precision[0] != "bf16":
        return
    r = rec.residuals[np.isfinite(rec.residuals)]
    if r.size and float(np.median(r)) < prec.REFINE_BELOW:
        run_precision[0] = "fp32"
        books.refined_at = last_k + 1
