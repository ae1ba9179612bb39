"""Training memory of one step, per memory mode (a DEQ's backward modes, an EBM's unrolled or last-step descent)
and iteration count.

One measured step is what training does: forward (encoder, solver, readout), cross-entropy loss,
backward. Two numbers come back:
- `saved_bytes`: bytes of the tensors autograd saved for backward during the forward, seen through
  `torch.autograd.graph.saved_tensors_hooks`, each storage counted once, parameters, buffers,
  inputs and targets excluded. Device independent, so CPU and GPU runs agree.
- `peak_bytes`: on CUDA, the peak allocated memory during forward + backward above what was
  allocated before the step (torch.cuda peak statistics); None on the CPU.

`unrolled` runs exactly `iters` solver steps with the graph recorded (tol = 0 switches the
convergence stop off); `implicit` and `jfb` solve up to `iters` steps without a graph.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterable

import torch
from torch.nn import functional as F

from models import UNROLLED, DEQModel, IterativeModel

MODES = DEQModel.memory_modes  # a DEQ's backward modes; all_modes() has every family's


def _storage_key(t: torch.Tensor) -> tuple:
    try:
        s = t.untyped_storage()
        return (str(t.device), s.data_ptr()) if s.data_ptr() else ("id", id(t))
    except (RuntimeError, NotImplementedError):  # tensors without a plain storage
        return ("id", id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


class SavedTensorMeter:
    """Context manager: bytes of the distinct storages autograd saved while it was active and still holds for
    backward when it exits.

    `exclude` lists tensors whose storages do not count (parameters, inputs). A graph built and freed inside the
    context does not count: an energy-based model's descent takes a gradient at every step, and the steps run
    without a graph record one for that gradient and free it at once; only what the final backward needs is
    training memory. The count is taken at exit, while the caller still holds the loss.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._excluded = {_storage_key(t) for t in exclude}
        self._seen: dict[tuple, tuple[weakref.ref, int]] = {}
        self._final: tuple[int, int] | None = None
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self._excluded:
            old = self._seen.get(key)
            if old is None or old[0]() is None:  # new, or the address of a storage freed since
                self._seen[key] = (weakref.ref(t), _storage_bytes(t))
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def _alive(self) -> list[int]:
        return [b for ref, b in self._seen.values() if ref() is not None]

    @property
    def bytes(self) -> int:
        return self._final[0] if self._final is not None else sum(self._alive())

    @property
    def count(self) -> int:
        return self._final[1] if self._final is not None else len(self._alive())

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        alive = self._alive()
        self._final = (sum(alive), len(alive))
        self._seen.clear()


def all_modes() -> tuple[str, ...]:
    """Every memory mode some registered family declares (DEQ: unrolled, implicit, jfb; EBM: unrolled, last)."""
    from models import families

    out: list[str] = []
    for fam in families():
        out += [m for m in fam.memory_modes if m not in out]
    return tuple(out)


def measure_step(model: IterativeModel, x: torch.Tensor, y: torch.Tensor, mode: str, iters: int,
                 method: str | None = None, tol: float | None = None, backward_solver: dict | None = None) -> dict:
    """One training step of `model` on encoded inputs x (B, C, *spatial) and targets y (B, *spatial) in one of
    its family's `memory_modes` with an iteration budget `iters`: {mode, iters, saved_bytes, peak_bytes, seconds
    (forward + backward), nfe (forward evaluations), method}. A DEQ's modes are its backward modes (method, tol,
    backward_solver: its solver options); an EBM's are unrolled (every descent step on the graph) and last
    (only the last one)."""
    if mode not in model.memory_modes:
        if not model.memory_modes:
            raise ValueError(f"memory modes need a family that declares them (DEQ, EBM); this one is "
                             f"{model.family_name}")
        raise ValueError(f"unknown memory mode {mode!r} for {model.family_name}; accepted: "
                         f"{', '.join(model.memory_modes)}")
    options = {k: v for k, v in (("method", method), ("tol", tol), ("backward_solver", backward_solver))
               if v is not None}
    exclude = [*model.parameters(), *model.buffers(), x, y]
    cuda = x.device.type == "cuda"
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        if cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
        t0 = time.perf_counter()
        with SavedTensorMeter(exclude) as meter:
            loss, info = model.memory_loss(x, lambda logits: F.cross_entropy(logits, y), mode, iters, **options)
        loss.backward()
        if cuda:
            torch.cuda.synchronize(x.device)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(x.device) - base if cuda else None
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return {"mode": mode, "iters": iters, "saved_bytes": meter.bytes, "peak_bytes": peak, "seconds": seconds,
            "nfe": info["nfe"], "method": info.get("method")}


def unrolled_bytes_estimate(model: IterativeModel, x: torch.Tensor, y: torch.Tensor, iters: int,
                            method: str | None = None) -> int:
    """Saved bytes an unrolled step at `iters` would take, extrapolated linearly from 8 and 16 steps."""
    if UNROLLED not in model.memory_modes:
        return 0
    a = measure_step(model, x, y, UNROLLED, 8, method)["saved_bytes"]
    b = measure_step(model, x, y, UNROLLED, 16, method)["saved_bytes"]
    return int(b + max(0, b - a) / 8 * max(0, iters - 16))


def memory_budget(device: torch.device) -> int:
    """Bytes a measurement may let autograd keep: 80% of free GPU memory, or half the free RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.8 * free)
    try:
        return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def measure(model: IterativeModel, x: torch.Tensor, y: torch.Tensor, iters: Iterable[int], modes: Iterable[str],
            method: str | None = None, tol: float | None = None) -> list[dict]:
    """measure_step for every (mode, iters), modes outer: the `python -m ttc memory` list."""
    return [measure_step(model, x, y, mode, k, method, tol) for mode in modes for k in iters]
