"""Instrumented runs: a model, a batch of problems and a budget -> one record per iteration.

This stream is what the CLI, the tests and the dashboard consume. Records carry per-sample data
(correctness, residual, convergence) so nothing is averaged away before the caller decides.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models import IterativeModel
from models.base import tensor_bytes
from tasks import Task

MAX_ITERS = 5000


@dataclass
class IterRecord:
    k: int  # 1-based iteration (layer for explicit models, solver step for DEQs)
    accuracy: float  # exact-match fraction over the batch
    correct: np.ndarray  # (B,) bool, whole-output match per sample
    residual: float  # mean over running samples of the relative residual (NaN when none runs)
    residuals: np.ndarray  # (B,) relative residual per sample (NaN once a sample stopped)
    nfe: int  # function evaluations spent so far
    elapsed: float  # seconds since the run started
    memory_bytes: int  # see memory_kind
    memory_kind: str  # "cuda_allocated" or "cpu_tensor_bytes" (bytes of the tensors this run holds)
    converged: np.ndarray  # (B,) bool
    diverged: np.ndarray  # (B,) bool
    preds: torch.Tensor  # (B, *spatial) uint8 argmax prediction (on the CPU)
    confidence: np.ndarray  # (B,) mean over cells of the predicted class probability
    bit_accuracy: float  # fraction of output cells right
    series: dict[str, np.ndarray] | None = None  # (B,) the family's extra per-sample series (its extra_series)
    maps: dict[str, np.ndarray] | None = None  # (maps_for, ...) float16 maps of the first samples (extra_maps)
    cell_error: np.ndarray | None = None  # (cells,) float32 fraction of the batch wrong at each output cell
    z: torch.Tensor | None = None  # (B, W, *spatial) the state, on the run's device (kept only when keep_state)


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda")
    return torch.device(device)


def _finite_rows(z: torch.Tensor, zn: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every entry of the sample is finite. NaN and inf propagate into the norm zn, so a finite
    norm proves finite entries; on the CPU the full scan (three passes over z) runs only when some norm is
    not finite. On a GPU the scan is cheap and the check would cost a synchronisation."""
    if z.device.type == "cpu":
        ok = zn < math.inf  # a norm is >= 0 or NaN: below inf means finite
        if bool(ok.all()):
            return ok
    return torch.isfinite(z.flatten(1)).all(dim=1)


def _to_host(fields: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The per-iteration tensors as numpy arrays of the same dtypes and shapes (views on the CPU)."""
    if all(t.device.type == "cpu" for t in fields.values()):
        return {k: t.numpy() for k, t in fields.items()}
    return _pack_to_host(fields)


def _pack_to_host(fields: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """_to_host through one byte buffer: a single device-to-host copy, so a GPU run synchronises once per
    iteration rather than once per field. Wide dtypes go first so every slice is aligned for its view."""
    order = sorted(fields, key=lambda k: -fields[k].element_size())
    flat = [fields[k].reshape(-1) for k in order]
    packed = torch.cat([t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8) for t in flat]).cpu()
    out, at = {}, 0
    for k, f in zip(order, flat, strict=True):
        t = fields[k]
        nb = f.numel() * f.element_size()
        part = packed[at:at + nb]
        out[k] = (part.view(t.dtype) if t.dtype != torch.bool else part.bool()).view(t.shape).numpy()
        at += nb
    return out


def probe(model: IterativeModel, task: Task, inputs: np.ndarray, targets: np.ndarray, iters: int,
          device: str | torch.device | None = "cpu", early_stop: bool = False, tol: float | None = None,
          settings=None, z0: torch.Tensor | None = None, keep_state: bool = False,
          maps_for: int = 0, cell_error: bool = False) -> Iterator[IterRecord]:
    """Yield one IterRecord per iteration of `model` on the problems.

    settings are the family's run settings (None: the model's own). For families without their own residual
    (explicit, recursive) the residual is ||z_k - z_{k-1}|| / ||z_k||, a sample is converged once it falls below
    tol (default 1e-4) and diverged once z turns non-finite. A family whose settings have a `tol` (DEQ solvers)
    gets tol, when given, there, and reports its own residual and stops. With early_stop, the run ends once no
    sample is still running. A family that `needs_grad` runs with autograd on, others in inference mode.
    maps_for: copy the family's per-iteration maps (memory read/write weights) of the first that many samples.
    cell_error: also report the fraction of the batch wrong at each output cell (the front of the computation).
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if not 1 <= iters <= MAX_ITERS:
        raise ValueError(f"iteration budget {iters} out of range; accepted: 1..{MAX_ITERS}")
    settings = model.run_settings(settings)
    if tol is not None and hasattr(settings, "tol"):
        settings = settings.updated(tol=tol)
    tol = 1e-4 if tol is None else tol
    # move and switch mode only when needed: .to() and .eval() walk every module (30 blocks in an explicit model),
    # which cost about a tenth of a short run's time and changed a shared model needlessly
    first = next(model.parameters(), None)
    if first is not None and first.device != dev:
        model = model.to(dev)
    if model.training:
        model = model.eval()
    x = task.encode(torch.as_tensor(np.ascontiguousarray(inputs))).to(dev)
    y = torch.as_tensor(np.ascontiguousarray(targets)).to(dev).long()
    B = x.shape[0]
    mask_fn = getattr(task, "cell_mask", None)
    mask = mask_fn(x) if mask_fn is not None else None  # cells a prediction is read at (mazes: open cells)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
    z_prev = None
    # per-sample bookkeeping (residual, convergence, divergence, accuracy) runs on the host on (B,) arrays: a
    # handful of device ops per iteration instead of about thirty, which mattered for cheap iterations (an
    # explicit layer of width 32 cost about 1.4 ms on 100 problems, the old bookkeeping about a third of that)
    conv = np.zeros(B, dtype=bool)
    div = np.zeros(B, dtype=bool)
    numel = np.float32(y.numel())
    t0 = time.perf_counter()
    grad_mode = contextlib.nullcontext() if model.needs_grad else torch.inference_mode()
    with grad_mode:
        for st in model.stream(x, iters, z0=None if z0 is None else z0.to(dev), settings=settings):
            z, logits = st.z, st.logits
            own = st.residual is not None
            if logits.shape[1] == 2:  # two classes: the sign of the logit difference and sigmoid(|difference|)
                d = (logits[:, 1] - logits[:, 0]).float()
                pred = d > 0  # ties go to class 0, as argmax does
                conf = torch.sigmoid(d.abs())  # (B, *spatial), the predicted class's probability
            else:
                conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)  # (B, *spatial)
            if mask is not None:
                pred = pred * mask
            right = pred == y
            fields = {"correct": right.flatten(1).all(dim=1), "bits": right.sum(),
                      "conf": conf.flatten(1).mean(dim=1), "preds": pred.to(torch.uint8)}
            if own:
                fields.update(res=st.residual.float(), conv=st.converged, div=st.diverged)
            else:
                zn = z.flatten(1).norm(dim=1)
                fields["zn"] = zn
                fields["num"] = zn if z_prev is None else (z - z_prev).flatten(1).norm(dim=1)
                if cuda:  # a scan is cheap on a GPU and rides the same copy; on the CPU the norm tells (below)
                    fields["finite"] = torch.isfinite(z.flatten(1)).all(dim=1)
            if cell_error:
                fields["cell_error"] = 1.0 - right.flatten(1).float().mean(dim=0)
            if cuda:  # the allocator's count is kept on the host: no synchronisation needed
                mem, kind = torch.cuda.memory_allocated(dev), "cuda_allocated"
            else:
                mem = tensor_bytes(x, y, z, z_prev, logits) + st.held_bytes
                kind = "cpu_tensor_bytes"
            h = _to_host(fields)
            if own:
                res_np, conv, div = h["res"], h["conv"], h["div"]
            else:
                zn_np = h["zn"]
                finite = h["finite"] if cuda else zn_np < np.inf  # a norm is >= 0 or NaN: below inf means finite
                if not cuda and not finite.all():
                    finite = _finite_rows(z, zn).numpy()
                if finite.all() and np.isfinite(h["num"]).all():  # the common case needs no error state
                    raw = h["num"] / (zn_np + np.float32(1e-12))
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        raw = h["num"] / (zn_np + np.float32(1e-12))
                div = div | ~finite
                conv = conv & ~div  # one that blows up after it converged counts as diverged, never as both
                running = ~(conv | div)
                res_np = np.where(running, raw, np.float32(np.nan)).astype(np.float32, copy=False)
                conv = conv | (running & (res_np < tol))  # NaN compares False, without a warning
            correct = h["correct"]
            series = None
            if st.series:
                series = {k: v.detach().float().cpu().numpy() for k, v in st.series.items()}
            maps = None
            if maps_for > 0 and st.maps:
                maps = {k: v[:maps_for].detach().to(torch.float16).cpu().numpy() for k, v in st.maps.items()}
            finite_res = res_np[np.isfinite(res_np)]
            yield IterRecord(
                k=st.k, accuracy=float(np.float32(correct.sum()) / np.float32(B)), correct=correct,
                residual=float(finite_res.mean()) if finite_res.size else math.nan, residuals=res_np,
                nfe=st.nfe, elapsed=time.perf_counter() - t0, memory_bytes=int(mem), memory_kind=kind,
                converged=conv, diverged=div, preds=torch.from_numpy(h["preds"]), confidence=h["conf"],
                bit_accuracy=float(np.float32(h["bits"]) / numel), series=series, maps=maps,
                cell_error=h.get("cell_error"), z=z if keep_state else None,
            )
            if early_stop and not (~(conv | div)).any():
                return
            z_prev = z
