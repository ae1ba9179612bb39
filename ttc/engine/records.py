"""What a probe run records: one IterRecord per iteration, and the bookkeeping that makes them (an iteration
waiting for its record, the per-sample residuals, convergence and divergence, the per-cell statistics)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import torch

from models import IterativeModel


@dataclass
class IterRecord:
    k: int  # 1-based iteration (layer for explicit models, solver step for DEQs)
    accuracy: float  # exact-match fraction over the batch
    correct: np.ndarray  # (B,) bool, whole-output match per sample
    residual: float  # mean over running samples of the relative residual (NaN when none runs)
    residuals: np.ndarray  # (B,) relative residual per sample (NaN once a sample stopped)
    nfe: int  # function evaluations spent so far
    elapsed: float  # seconds the run computed until this iteration ended (time its consumer held it excluded)
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
    cell_conf: np.ndarray | None = None  # (conf_for, *spatial) float16 predicted class's probability per cell
    z: torch.Tensor | None = None  # (B, W, *spatial) the state, on the run's device (kept only when keep_state)
    precision: str = "fp32"  # what the cores computed this iteration in (a bf16 run refines in fp32, see probe)


class Columns:
    """Probe records gathered into per-iteration columns: the one way a consumer of probe() keeps what it reads.
    fields: IterRecord attribute names, or name -> function of the record (a derived or trimmed value: a count,
    a copy of the first samples); a value that is None is not kept (a statistic the run does not compute).
    With series=True the family's extra series are kept too, each under its own name. Iterate `collect(records)`
    to keep every record while acting on each."""

    def __init__(self, fields: Sequence[str] | dict[str, Callable[[IterRecord], object]], series: bool = False):
        named = fields if isinstance(fields, dict) else {}
        self._get = {f: named.get(f) or attrgetter(f) for f in fields}
        self.cols: dict[str, list] = {f: [] for f in self._get}
        self.series: dict[str, list] | None = {} if series else None
        self.count = 0  # records kept
        self.last: IterRecord | None = None

    def add(self, r: IterRecord) -> None:
        for name, get in self._get.items():
            v = get(r)
            if v is not None:
                self.cols[name].append(v)
        if self.series is not None:
            for name, v in (r.series or {}).items():
                self.series.setdefault(name, []).append(v)
        self.count += 1
        self.last = r

    def collect(self, records: Iterable[IterRecord]) -> Iterator[IterRecord]:
        for r in records:
            self.add(r)
            yield r

    def array(self, name: str, dtype=None) -> np.ndarray:
        """A column of scalars as a (K,) array."""
        return np.asarray(self.cols[name], dtype=dtype)

    def stack(self, name: str, empty: tuple[int, ...] = (0,), dtype=None) -> np.ndarray:
        """A column of per-sample arrays as (K, ...); an empty column as zeros of shape `empty`."""
        c = self.cols[name]
        out = np.stack(c) if c else np.zeros(empty, dtype=dtype or np.float64)
        return out if dtype is None else out.astype(dtype, copy=False)


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


def _cells_on_device(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                     cell_error: bool, conf_for: int = 0) -> dict[str, torch.Tensor]:
    """Per-sample exact match, right cells, mean confidence and predictions, computed where the logits are.
    Two classes: the sign of the logit difference (ties go to class 0, as argmax does) and sigmoid(|difference|),
    the predicted class's probability; more: softmax's argmax and max."""
    logits = logits.detach()
    if logits.shape[1] == 2:
        d = (logits[:, 1] - logits[:, 0]).float()
        pred = d > 0
        conf = torch.sigmoid(d.abs())  # (B, *spatial)
    else:
        conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
    if mask is not None:
        pred = pred * mask
    right = pred == y
    out = {"correct": right.flatten(1).all(dim=1), "bits": right.sum(), "conf": conf.flatten(1).mean(dim=1),
           "preds": pred.to(torch.uint8)}
    if cell_error:
        out["cell_error"] = 1.0 - right.flatten(1).float().mean(dim=0)
    if conf_for:
        out["cell_conf"] = conf[:conf_for].to(torch.float16)
    return out


def cells_on_host(logits: list[torch.Tensor], y: tuple[np.ndarray, np.ndarray], mask: np.ndarray | None,
                  cell_error: bool, conf_for: int = 0) -> list[dict[str, np.ndarray]]:
    """_cells_on_device for the CPU logits of several iterations at once: one call per statistic for them all.
    Sums over cells are products with a vector of ones (a BLAS call; numpy's reduction along a short last axis
    costs several times more); counts are exact in float32 to 2^24 cells a problem, a batch's total in float64.
    y: the targets flattened to (B, cells), as class indices and as bools; mask: (B, cells) or None.
    Returns one dict per iteration, views into arrays the iterations share."""
    with torch.no_grad():
        lt = logits[0].unsqueeze(0) if len(logits) == 1 else torch.stack(logits)
        K, B, C, spatial = *lt.shape[:3], lt.shape[3:]
        lt = lt.float().reshape(K, B, C, -1)
        if C == 2:  # torch forms the difference of the two strided class planes several times faster than numpy
            d = (lt[:, :, 1] - lt[:, :, 0]).numpy()
        else:
            conf_t, pred_t = torch.softmax(lt, dim=2).max(dim=2)
    cells = lt.shape[3]
    ones = np.ones(cells, dtype=np.float32)
    if C == 2:
        pred = d > 0  # ties go to class 0, as argmax does
        target = y[1]
        np.abs(d, out=d)  # the predicted class's probability is sigmoid(|d|) = (1 + tanh(|d| / 2)) / 2
        np.tanh(np.multiply(d, np.float32(0.5), out=d), out=d)
        conf = (d @ ones) * np.float32(0.5 / cells) + np.float32(0.5)
        per_cell = (d[:, :conf_for] * np.float32(0.5) + np.float32(0.5)) if conf_for else None
    else:
        pred, conf = pred_t.numpy(), (conf_t.numpy() @ ones) / np.float32(cells)
        per_cell = conf_t.numpy()[:, :conf_for] if conf_for else None
        target = y[0]
    if mask is not None:
        pred = pred & mask if pred.dtype == bool else pred * mask
    right = (pred == target).astype(np.float32)
    hits = right @ ones
    correct, bits = hits == cells, np.add.reduce(hits, axis=1, dtype=np.float64)
    preds = (pred.view(np.uint8) if pred.dtype == bool else pred.astype(np.uint8)).reshape(K, B, *spatial)
    out = [{"correct": correct[i], "bits": bits[i], "conf": conf[i], "preds": preds[i]} for i in range(K)]
    if cell_error:
        err = np.float32(1) - (np.ones(B, dtype=np.float32) @ right) / np.float32(B)
        for i in range(K):
            out[i]["cell_error"] = err[i]
    if per_cell is not None:
        per_cell = per_cell.astype(np.float16).reshape(K, -1, *spatial)
        for i in range(K):
            out[i]["cell_conf"] = per_cell[i]
    return out


def _grad_mode(model: IterativeModel):
    """Autograd on for a family whose inference takes gradients (`needs_grad`), inference mode for the others."""
    return contextlib.nullcontext() if model.needs_grad else torch.inference_mode()


@dataclass
class Waiting:
    """One iteration waiting for its record until a flush: what the stream gave, and what is known of it so far."""

    k: int
    nfe: int
    memory: int  # bytes (see IterRecord.memory_kind)
    elapsed: float  # seconds the run had computed when the iteration ended
    series: dict | None
    maps: dict | None
    z: torch.Tensor | None  # the state, kept only with keep_state
    state: object  # the stream's IterState (its logits, its own residual)
    zf: torch.Tensor | None  # the state flattened per sample (None: the family reports its own residual)
    prev: torch.Tensor | None  # the previous iteration's zf
    host: dict | None = None  # host fields: residual parts or the family's own residual, per-cell statistics
    finite: np.ndarray | None = None  # (B,) bool where a state is finite (None: all are)
    settled: tuple | None = None  # (residuals, running residuals, converged, diverged) once settled


class Books:
    """A run's per-sample bookkeeping on the host: residuals, convergence and divergence, the per-cell statistics,
    and the records made from them. On the CPU the iterations of a flush are measured and settled together."""

    def __init__(self, y: torch.Tensor, mask: torch.Tensor | None, cuda: bool, tol: float, precision: str,
                 cell_error: bool, conf_for: int, fixed_bytes: int):
        self.y, self.mask, self.cuda, self.tol = y, mask, cuda, tol
        self.precision, self.cell_error, self.conf_for, self.fixed_bytes = precision, cell_error, conf_for, fixed_bytes
        self.B = y.shape[0]
        self.conv = np.zeros(self.B, dtype=bool)
        self.div = np.zeros(self.B, dtype=bool)
        self.numel = np.float32(y.numel())
        self.eps = np.float32(1e-12)
        self.diff_buf: torch.Tensor | None = None  # z - z_prev is formed here: one buffer a run
        self.refined_at: int | None = None  # the first iteration a bf16 run computed in float32
        if not cuda:  # the per-cell statistics run in numpy on views of the logits (cells_on_host)
            y_host = y.flatten(1).numpy()
            self.y_host = (y_host, y_host.astype(bool))
            self.mask_host = None if mask is None else mask.flatten(1).numpy()

    def settle(self, h: dict, finite: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Advance convergence and divergence by one iteration's host fields; (residuals, the running ones')."""
        if "res" in h:  # the family's own residual and stops
            res_np, self.conv, self.div = h["res"], h["conv"], h["div"]
            return res_np, res_np[np.isfinite(res_np)]
        zn_np, num = h["zn"], h["num"]
        stopped = self.conv | self.div
        if finite is None and float(np.add.reduce(num)) < math.inf:  # the common case needs no error state
            res_np = num / (zn_np + self.eps)
            res_np[stopped] = np.nan
        else:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                raw = num / (zn_np + self.eps)
            if finite is not None:
                self.div = self.div | ~finite
                self.conv = self.conv & ~self.div  # one that blows up after it converged counts as diverged only
                stopped = self.conv | self.div
            res_np = np.where(stopped, np.float32(np.nan), raw).astype(np.float32, copy=False)
        self.conv = self.conv | (res_np < self.tol)  # NaN compares False, without a warning
        return res_np, res_np[~stopped]

    def settle_now(self, w: Waiting) -> tuple:
        """settle() for one iteration, with the states it leaves: (residuals, running ones', converged, diverged)."""
        return (*self.settle(w.host, w.finite), self.conv, self.div)

    def settle_all(self, items: list[Waiting]) -> list[tuple]:
        """settle() for every iteration of a batch, in order; the common case (finite norms, no own residual) in
        one pass over the batch. Returns (residuals, the running ones', converged, diverged) per iteration."""
        hs = [w.host for w in items]
        if "res" in hs[0] or any(w.finite is not None for w in items):
            return [self.settle_now(w) for w in items]
        zn_k, num_k = np.stack([h["zn"] for h in hs]), np.stack([h["num"] for h in hs])
        if not float(np.add.reduce(num_k, axis=None)) < math.inf:
            return [self.settle_now(w) for w in items]
        res_k = num_k / (zn_k + self.eps)
        stopped0 = self.conv | self.div
        # a sample running at the batch's start has converged by iteration i once its residual fell below tol at
        # i or before; each iteration's residual is NaN for the samples stopped before it (as settle() does)
        reached = np.logical_or.accumulate((res_k < self.tol) & ~stopped0, axis=0)
        before = np.empty_like(reached)
        before[0] = stopped0
        before[1:] = stopped0 | reached[:-1]
        res_k[before] = np.nan
        conv_k = self.conv | reached
        self.conv = conv_k[-1]
        return [(res_k[i], res_k[i][~before[i]], conv_k[i], self.div) for i in range(len(hs))]

    def _diff_norm(self, zf: torch.Tensor, prev: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.diff_buf is None or self.diff_buf.shape != zf.shape or self.diff_buf.dtype != zf.dtype:
            self.diff_buf = torch.empty_like(zf)
        return torch.linalg.vector_norm(torch.sub(zf, prev, out=self.diff_buf), dim=1, out=out)

    def measure(self, st, zf: torch.Tensor | None, prev: torch.Tensor | None) -> tuple[dict, np.ndarray | None]:
        """One iteration's host fields (its residual's parts or the family's own residual, convergence and
        divergence; on a GPU also the per-cell statistics) and finiteness (None: every sample's state is finite)."""
        finite = None
        if zf is None:
            fields = {"res": st.residual.float(), "conv": st.converged, "div": st.diverged}
        else:
            zn = torch.linalg.vector_norm(zf, dim=1)
            fields = {"zn": zn, "num": zn if prev is None else self._diff_norm(zf, prev)}
            if self.cuda:  # a scan is cheap on a GPU and rides the same copy
                fields["finite"] = torch.isfinite(zf).all(dim=1)
        if self.cuda:  # one copy to the host per iteration
            fields.update(_cells_on_device(st.logits, self.y, self.mask, self.cell_error, self.conf_for))
            h = _to_host(fields)
            if "finite" in h and not h["finite"].all():
                finite = h["finite"]
        else:
            h = _to_host(fields)
            # NaN and inf propagate into a norm, so a finite sum of the norms proves finite states; when it is
            # not, the full scan tells a non-finite entry from finite entries whose norm overflowed
            if "zn" in h and not float(np.add.reduce(h["zn"])) < math.inf:
                finite = _finite_rows(zf, zn).numpy()
        return h, finite

    def measure_waiting(self, items: list[Waiting]) -> None:
        """measure() for the iterations that waited for a flush, in order. The norms of their states and of their
        changes go into one (2, iterations, B) tensor that reaches the host in one call."""
        for w in items:
            if w.zf is None:  # the family's own residual
                w.host, w.finite = self.measure(w.state, w.zf, w.prev)
        items = [w for w in items if w.zf is not None]
        if not items:
            return
        norms = torch.empty(2, len(items), items[0].zf.shape[0], dtype=items[0].zf.dtype)
        for i, w in enumerate(items):
            torch.linalg.vector_norm(w.zf, dim=1, out=norms[0, i])
            if w.prev is None:
                norms[1, i] = norms[0, i]
            else:
                self._diff_norm(w.zf, w.prev, out=norms[1, i])
        zn, num = norms.numpy()
        finite_all = float(np.add.reduce(zn, axis=None)) < math.inf  # as in measure(): one check for the batch
        for i, w in enumerate(items):
            w.host = {"zn": zn[i], "num": num[i]}
            if not finite_all and not float(np.add.reduce(zn[i])) < math.inf:
                w.finite = _finite_rows(w.zf, norms[0, i]).numpy()

    def prepare(self, model: IterativeModel, items: list[Waiting], logits: list[torch.Tensor]) -> list[Waiting]:
        """On the CPU, what a batch's records need beyond its iterations: the norms of the states that waited, the
        per-cell statistics. Touches nothing the run goes on using, so it may run on the spare core meanwhile."""
        with _grad_mode(model):  # thread-local; the last batch comes after the stream ended
            self.measure_waiting([w for w in items if w.host is None])
        cells = cells_on_host(logits, self.y_host, self.mask_host, self.cell_error, self.conf_for)
        for w, c in zip(items, cells, strict=True):
            w.host.update(c)
        return items

    def record(self, w: Waiting, settled: tuple) -> IterRecord:
        res_np, finite_res, conv, div = settled
        h = w.host
        correct = h["correct"]
        return IterRecord(
            k=w.k, accuracy=float(np.float32(np.count_nonzero(correct)) / np.float32(self.B)), correct=correct,
            residual=float(np.add.reduce(finite_res) / np.float32(finite_res.size)) if finite_res.size else math.nan,
            residuals=res_np, nfe=w.nfe, elapsed=w.elapsed, memory_bytes=int(w.memory),
            memory_kind="cuda_allocated" if self.cuda else "cpu_tensor_bytes", converged=conv, diverged=div,
            preds=torch.from_numpy(h["preds"]), confidence=h["conf"],
            bit_accuracy=float(np.float32(h["bits"]) / self.numel),
            series=None if w.series is None else {k: v.detach().float().cpu().numpy() for k, v in w.series.items()},
            maps=None if w.maps is None else {k: v.detach().to(torch.float16).cpu().numpy()
                                              for k, v in w.maps.items()},
            cell_error=h.get("cell_error"), cell_conf=h.get("cell_conf"), z=w.z,
            precision="fp32" if self.refined_at is not None and w.k >= self.refined_at else self.precision)

    def records(self, items: list[Waiting]) -> Iterator[IterRecord]:
        states = self.settle_all(items) if items[0].settled is None else [w.settled for w in items]
        for w, settled in zip(items, states, strict=True):
            yield self.record(w, settled)

