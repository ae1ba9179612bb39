"""The one evaluation: (model, problems, budget) -> one `Curve`, and the one summary of a curve.

The CLI's `eval`, training's validation, the card's accuracy table (`python -m ttc measure`), the report, the
bench and the dashboard's metrics all summarise accuracy with `summarize`; every command that evaluates
problems in batches goes through `evaluate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models import IterativeModel
from models import precision as prec
from tasks import Task
from tasks.difficulty import draw

from .probe import probe
from .records import Columns


def wilson(p: float | np.ndarray, n: int, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval (95% by default) of a fraction p of n trials, elementwise: (low, high). Unlike
    p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at p = 0 or 1 (Wilson 1927)."""
    p = np.asarray(p, dtype=np.float64)
    if n <= 0:
        return np.zeros_like(p), np.ones_like(p)
    z2 = z * z
    p = np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)  # a NaN accuracy (nothing measured) gets the widest band
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


@dataclass(frozen=True)
class Summary:
    """Best and final exact-match accuracy of one curve, and the first iteration reaching the best."""

    best_accuracy: float
    best_iter: int  # 1-based iteration (its k) of the first best
    final_accuracy: float
    iters: int  # points on the curve

    def to_dict(self) -> dict:
        return {"best_accuracy": self.best_accuracy, "best_iter": self.best_iter,
                "final_accuracy": self.final_accuracy}


def summarize(accuracy: Sequence[float], ks: Sequence[int] | None = None) -> Summary:
    """The summary of an accuracy curve (ks: the iteration of each point, default 1..K)."""
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.size == 0:
        raise ValueError("an empty accuracy curve has no summary")
    b = int(np.argmax(acc))
    k = int(ks[b]) if ks is not None else b + 1
    return Summary(best_accuracy=float(acc[b]), best_iter=k, final_accuracy=float(acc[-1]), iters=int(acc.size))


@dataclass
class Curve:
    """Per-iteration results of one run over n problems (the `python -m ttc eval --json` numbers)."""

    accuracy: list[float]  # exact-match fraction after each iteration 1..K
    residual: list[float | None]  # mean relative residual over running samples (None when none runs)
    nfe: list[int]  # function evaluations so far (the largest batch's)
    n: int
    seconds: float
    converged: int  # samples converged at the end
    diverged: int
    held_from: int | None = None  # early stop: from this iteration on the accuracy is held, not measured
    series: dict[str, list[float | None]] | None = None  # the family's extra series, mean over finite samples
    solved_at: list[int | None] | None = None  # per problem: the iteration from which it stays right (None: never)
    converged_right: int = 0  # samples converged at the end with a right answer (a DEQ's certified solutions)
    # a bf16 run: the first iteration a batch computed in float32, refining near the fixed point (None: never)
    refined_at: int | None = None

    def summary(self) -> Summary:
        return summarize(self.accuracy)

    def upto(self, budget: int) -> Summary:
        """The summary of the first `budget` iterations."""
        return summarize(self.accuracy[: max(1, min(budget, len(self.accuracy)))])

    def to_dict(self) -> dict:
        """The eval JSON: accuracy, its summary, residual, NFE and each of the family's extra series (a DEQ's
        solver_residual, a memory model's memory_norm ...) as a per-iteration list beside the residual."""
        out = {"accuracy": self.accuracy, **self.summary().to_dict(), "residual": self.residual,
               "nfe": self.nfe[-1] if self.nfe else 0, "converged": self.converged, "diverged": self.diverged,
               "converged_right": self.converged_right, "refined_at": self.refined_at}
        for name, values in (self.series or {}).items():
            out[name if name not in out else f"series_{name}"] = values
        return out


def evaluate(model: IterativeModel, task: Task, x: np.ndarray, y: np.ndarray, iters: int,
             device: str | torch.device | None = "cpu", batch: int = 256, settings=None,
             on_iter: Callable[[int], None] | None = None, early_stop: bool = False,
             precision: str | None = None) -> Curve:
    """Run the problems in batches and merge the per-iteration traces, so that the result does not depend on
    the batch size: accuracy over all problems, residual over all running samples, NFE of the longest batch
    (what one batch holding every problem would spend). on_iter(1) is called after every iteration of every
    batch (a progress bar's update). With early_stop a batch ends once every one of its samples has converged
    (its state stopped changing: relative change below 1e-4, or its solver's tolerance) or diverged; its
    correct count is then held for the rest of the budget, and `held_from` says where the curve stopped being
    measured (the last batch to stop). precision: the cores' compute precision, resolved (fp32 or bf16)."""
    n, budget = len(x), model.budget(iters)
    totals: dict[str, np.ndarray] = {}  # per iteration over all batches: right answers, residual sum and count, NFE
    series: dict[str, dict[int, list]] = {}  # name -> iteration -> [sum over finite samples, their count]
    conv = div = conv_right = 0
    solved_at: list[int | None] = []
    t0 = time.perf_counter()
    held_from = refined_at = None
    for s in range(0, n, batch):
        cols = Columns({**dict.fromkeys(("k", "correct", "residual", "nfe", "precision")),
                        "running": lambda r: int(np.isfinite(r.residuals).sum()),  # r.residual is the mean over these
                        "series": lambda r: {k: _finite_sum(v) for k, v in (r.series or {}).items()}})
        for _ in cols.collect(probe(model, task, x[s:s + batch], y[s:s + batch], iters, device=device,
                                    settings=settings, early_stop=early_stop, precision=precision)):
            if on_iter is not None:
                on_iter(1)
        last = cols.last
        steps, right, running = cols.count, cols.stack("correct"), cols.array("running", np.int64)
        pad = max(0, budget - steps)  # stopped early: every sample's state is settled, its answer held to the end
        part = {"correct": np.concatenate([right.sum(1), np.repeat(right[-1].sum(), pad)]),
                "res": np.concatenate([np.where(running > 0, cols.array("residual") * running, 0.0), np.zeros(pad)]),
                "res_n": np.concatenate([running, np.zeros(pad, np.int64)]),
                "nfe": np.concatenate([cols.array("nfe", np.int64), np.repeat(last.nfe, pad)])}
        for key, v in part.items():
            totals[key] = _merge(totals.get(key), v, np.maximum if key == "nfe" else np.add)
        for i, per in enumerate(cols.cols["series"]):
            for name, (tot, cnt) in per.items():
                acc = series.setdefault(name, {}).setdefault(i, [0.0, 0])
                acc[0], acc[1] = acc[0] + tot, acc[1] + cnt
        if (precision or prec.current()) == "bf16":  # where this batch refined in float32, if it did (see probe)
            k32 = next((k for k, p in zip(cols.cols["k"], cols.cols["precision"], strict=True) if p == "fp32"), None)
            if k32 is not None:
                refined_at = k32 if refined_at is None else min(refined_at, k32)
        if pad:
            held_from = max(held_from or 0, steps + 1)
            if on_iter is not None:
                on_iter(pad)
        conv += int(last.converged.sum())
        conv_right += int((last.converged & last.correct).sum())
        div += int(last.diverged.sum())
        wrong = ~right  # the last iteration each sample was wrong at (0: never)
        last_wrong = np.where(wrong.any(0), cols.array("k")[steps - 1 - np.argmax(wrong[::-1], axis=0)], 0)
        solved_at += [solved_from(int(w), bool(c), budget) for w, c in zip(last_wrong, last.correct, strict=True)]
    K = len(totals["correct"])
    means = {name: [by[i][0] / by[i][1] if i in by and by[i][1] else None for i in range(K)]
             for name, by in sorted(series.items())}
    residual = [float(r) / int(m) if m and math.isfinite(r) else None
                for r, m in zip(totals["res"], totals["res_n"], strict=True)]
    return Curve(accuracy=[int(c) / n for c in totals["correct"]], residual=residual,
                 nfe=[int(v) for v in totals["nfe"]], n=n, seconds=time.perf_counter() - t0, converged=conv,
                 diverged=div,
                 held_from=held_from if held_from is not None and held_from <= budget else None,
                 series=means or None, solved_at=solved_at, converged_right=conv_right, refined_at=refined_at)


def _finite_sum(v: np.ndarray) -> tuple[float, int]:
    """The sum of the finite entries and their count."""
    ok = np.isfinite(v)
    return float(v[ok].sum()), int(ok.sum())


def _merge(a: np.ndarray | None, b: np.ndarray, op) -> np.ndarray:
    """op of two per-iteration arrays, the shorter padded with zeros."""
    if a is None:
        return b
    k = max(len(a), len(b))
    return op(np.pad(a, (0, k - len(a))), np.pad(b, (0, k - len(b))))


def solved_from(last_wrong: int, right_at_end: bool, budget: int) -> int | None:
    """The iteration from which a sample is right to the end of the run: one after the last iteration it was wrong
    at (0: never wrong, so 1), or None when it is wrong at the end."""
    if not right_at_end or last_wrong >= budget:
        return None
    return last_wrong + 1


def accuracy_rows(model: IterativeModel, task: Task, sizes: Sequence[int], budgets: Sequence[int], n: int, seed: int,
                  device: str | torch.device | None = "cpu", settings=None, variant: str | None = None,
                  batch: int = 100, on_size: Callable[[int], None] | None = None,
                  early_stop: bool = False, precision: str | None = None, difficulty: int | None = None) -> list[dict]:
    """The card's accuracy table: for each size x budget, accuracy at the budget, the best within it and
    where; for looped families also the accuracy at 3x the best iteration (no overthinking). A fixed-depth
    family gets one row per size, at its depth."""
    rows = []
    for size in sizes:
        opts = {"variant": variant} if variant else {}
        x, y = draw(task, size, n, seed, difficulty, **opts)
        curve = evaluate(model, task, x, y, model.budget(max(budgets)), device=device, batch=batch,
                         settings=settings, early_stop=early_stop, precision=precision)
        for b in ([len(curve.accuracy)] if model.fixed_depth else budgets):
            m = curve.upto(b)
            row = {"size": size, "iters": b, "accuracy": float(curve.accuracy[min(b, len(curve.accuracy)) - 1]),
                   "best_accuracy": m.best_accuracy, "best_iter": m.best_iter, "n": n, "seed": seed,
                   "seconds": round(curve.seconds, 1)}
            if variant:
                row["generator"] = variant
            if difficulty is not None:
                row["difficulty"] = difficulty
            row["precision"] = precision or prec.current()
            if curve.refined_at is not None and curve.refined_at <= b:
                row["refined_at"] = curve.refined_at  # bf16 until here, float32 after (near the fixed point)
            if curve.held_from is not None:
                row["settled_at"] = curve.held_from  # every state had stopped changing: the rest is held
            if not model.fixed_depth and 3 * m.best_iter <= len(curve.accuracy):
                row["accuracy_at_3x_best"] = float(curve.accuracy[3 * m.best_iter - 1])
            rows.append(row)
        if on_size is not None:
            on_size(size)
    return rows
