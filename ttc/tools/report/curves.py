"""One run's curve (accuracy, residual, the iterations its best needed) and the fit of iterations against size."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from models import precision as prec
from tasks import get_task
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.evaluate import summarize
from ttc.engine.probe import probe
from ttc.engine.records import Columns
from ttc.tools.report.plan import ReportConfig, Run


@dataclass
class Curve:
    checkpoint: str
    family: str
    arch: str
    task: str
    size: int
    factor: int
    n: int
    budget: int
    accuracy: list[float]  # exact-match fraction after each iteration
    residual: list[float | None]  # mean relative residual over running samples (None when none runs)
    nfe: list[int]
    seconds: float
    stop: str  # why the curve ends: "budget", "converged" (no sample still changing) or "solved"
    converged: int
    diverged: int
    note: str = ""
    fixed_depth: bool = False  # the family's depth is fixed (explicit): no iteration study
    best_accuracy: float = field(init=False)
    best_iter: int = field(init=False)  # the first iteration at the best accuracy
    near_best_iter: int = field(init=False)  # the first within one percentage point of the best
    final_accuracy: float = field(init=False)
    still_improving: bool = field(init=False)  # the best came in the budget's last tenth, the budget hit

    def __post_init__(self) -> None:
        acc = np.asarray(self.accuracy)
        m = summarize(acc)
        self.best_accuracy, self.best_iter, self.final_accuracy = m.best_accuracy, m.best_iter, m.final_accuracy
        self.near_best_iter = int(np.argmax(acc >= m.best_accuracy - 0.01)) + 1
        self.still_improving = bool(not self.fixed_depth and self.stop == "budget" and self.best_accuracy < 1
                                    and self.best_iter > 0.9 * len(acc) and self.best_accuracy > float(acc[0]))

    @property
    def label(self) -> str:
        return f"{self.checkpoint} @ {self.size}"


def ck_precision(ck: Checkpoint, cfg: ReportConfig, device: torch.device) -> str:
    """The precision ck's runs compute in under the report's --precision (auto honours the card's preference)."""
    return prec.resolve(cfg.precision, device, ck.card.get("precision_auto"))


def run_curve(ck: Checkpoint, run: Run, seed: int, device: torch.device, precision: str = "fp32") -> Curve:
    """probe() over the run's problems, until the budget, convergence, or solved for as long again."""
    task = get_task(ck.task)
    xs, ys = task.generate(run.size, run.n, seed)
    cols = Columns(("accuracy", "residual", "nfe"))
    stop, first_solved = "budget", None
    t0 = time.perf_counter()
    for r in cols.collect(probe(ck.model, task, xs, ys, run.budget, device=device, early_stop=True,
                                precision=precision)):
        if r.accuracy >= 1.0:
            first_solved = r.k if first_solved is None else first_solved
            if not ck.model.fixed_depth and r.k >= 2 * first_solved + 10:
                stop = "solved"
                break
        else:
            first_solved = None
    seconds = time.perf_counter() - t0
    acc, nfe, last = cols.cols["accuracy"], cols.cols["nfe"], cols.last
    res = [None if math.isnan(v) else v for v in cols.cols["residual"]]
    return Curve(checkpoint=ck.name, family=ck.family, arch=ck.arch, task=ck.task, size=run.size, factor=run.factor,
                 n=run.n, budget=run.budget, accuracy=acc, residual=res, nfe=nfe, seconds=round(seconds, 2),
                 stop=stop, converged=int(last.converged.sum()), diverged=int(last.diverged.sum()), note=run.note,
                 fixed_depth=ck.model.fixed_depth)


def scaling_fit(curves: list[Curve], min_accuracy: float = 0.5) -> dict | None:
    """Least-squares slope of log(iterations to near-best accuracy) on log(size), over the sizes whose best
    accuracy reaches min_accuracy and whose curve is not cut by the budget: needed ~ size^slope."""
    pts = [(c.size, c.near_best_iter) for c in curves if c.best_accuracy >= min_accuracy and not c.still_improving]
    if len({s for s, _ in pts}) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([max(1, p[1]) for p in pts])
    slope, icpt = np.polyfit(x, y, 1)
    return {"exponent": float(slope), "prefactor": float(np.exp(icpt)), "sizes": [p[0] for p in pts],
            "iters": [p[1] for p in pts], "min_accuracy": min_accuracy}

