"""Findings (`python -m ttc report --out DIR`): what test-time compute buys each family as problems grow.

For each task with checkpoints: exact-match accuracy against iterations for every checkpoint at the
training size, 4x and 16x (or the largest size whose run fits the cost cap); the iterations needed to
reach the best accuracy as a function of problem size (how needed compute grows with size: the
algorithmic-complexity question); residual curves; and the DEQ memory table. Figures go out as PNG and
SVG (kaleido with a Chromium, else the summary says why) and HTML, the numbers as results.json, and
summary.md puts them together.

Costs are capped: a run's problems are cut (down to a floor) so that problems x iterations x
multiply-accumulates per problem-iteration stays under a cap, and a size whose run would still exceed
it is replaced by the largest affordable one. Runs end early once every sample's state has stopped
changing (relative change < 1e-4; a DEQ's solver tolerance) or once every problem has been solved for as
many iterations again as it took. Every such choice is written into the summary.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from models import ConfigError, get_family
from models import precision as prec
from tasks import TASKS, TaskError, get_task, optional
from ttc.app import export
from ttc.app.plots import LOG_AXIS, LOG_SMALL, add_wilson_band, family_color, fit_legend, lighter, memory_modes_figure
from ttc.engine.analyze import ranks
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.evaluate import summarize
from ttc.engine.limits import REPORT_RUN_COST, REPORT_RUN_COST_QUICK, run_cost
from ttc.engine.memory import measure_step, memory_budget, unrolled_bytes_estimate
from ttc.engine.probe import MAX_ITERS, probe, resolve_device
from ttc.engine.zoo import TEST_SEED, DEQCase, deq_cases, load_zoo, machine, scaled_size, training_size

FORMATS = ("png", "svg", "html")
_DASH = {1: "solid", 2: "dot", 4: "dash", 8: "dashdot", 16: "longdash"}


@dataclass(frozen=True)
class ReportConfig:
    quick: bool
    curve_factors: tuple[int, ...]  # sizes of the accuracy-vs-iterations figures, x the training size
    scaling_factors: tuple[int, ...]  # sizes of the iterations-needed-vs-size study
    n_base: int  # problems at the training size (and wherever the cost allows)
    n_min: int  # the floor when the cost cap cuts problems
    cost_cap: float  # cost of one run (engine.limits.run_cost units), a fraction of the one cap MAX_COST
    iter_cap: int  # iteration budget cap
    base_budget: int  # budget at the training size, in multiples of the training iterations
    memory_iters: tuple[int, ...]
    analysis_starts: int = 5  # initial states of the path-independence / breadth analysis per looped checkpoint
    analysis_n: int = 100  # its problems (fewer where the cost cap says so)
    precision: str = "auto"  # --precision: auto (per checkpoint: its card may prefer fp32), fp32 or bf16


def report_config(quick: bool = False) -> ReportConfig:
    if quick:
        return ReportConfig(quick=True, curve_factors=(1, 4), scaling_factors=(1, 2, 4), n_base=32, n_min=8,
                            cost_cap=REPORT_RUN_COST_QUICK, iter_cap=120, base_budget=2, memory_iters=(10, 100),
                            analysis_starts=3, analysis_n=16)
    return ReportConfig(quick=False, curve_factors=(1, 4, 16), scaling_factors=(1, 2, 4, 8, 16), n_base=200,
                        n_min=20, cost_cap=REPORT_RUN_COST, iter_cap=1500, base_budget=4, memory_iters=(10, 100, 1000))


# --- cost and plan -------------------------------------------------------------------------------------------

def iteration_cost(ck: Checkpoint, size: int) -> float:
    """One iteration on one problem, in the one cost model (engine.limits.run_cost)."""
    return run_cost(get_task(ck.task), size, 1, 1, ck.config.width)


@dataclass
class Run:
    """One planned run: a checkpoint on n problems of a size with an iteration budget."""

    size: int
    factor: int  # the size as a multiple of the training size (the nominal one when the size was capped)
    n: int
    budget: int
    note: str = ""


def report_sizes(task: str, base: int, factors: Sequence[int]) -> dict[int, int]:
    """factor -> the size run for it: base x factor, or, for a task that lists its own sizes (`size_ladder`: sudoku's
    blank counts are not a scale), the base and then the ladder's harder sizes in order (the factors then rank the
    sizes: 2 the next harder one, 4 the one after)."""
    ladder = optional(get_task(task), "size_ladder")
    if not ladder:
        return {f: scaled_size(task, base, f) for f in factors}
    harder = [s for s in sorted(ladder) if s > base]
    out = {}
    for i, f in enumerate(sorted(factors)):
        out[f] = base if i == 0 else harder[min(i - 1, len(harder) - 1)] if harder else base
    return out


def plan_run(ck: Checkpoint, base: int, factor: int, budget_at: Callable[[int], int], cfg: ReportConfig,
             size: int | None = None) -> Run:
    """The largest size up to `size` (default base x factor) whose run (budget_at(size) iterations) fits the cost
    cap with at least n_min problems, and as many problems (up to n_base) as the cap allows."""
    want = size or scaled_size(ck.task, base, factor)
    size = want
    while size > base and cfg.n_min * budget_at(size) * iteration_cost(ck, size) > cfg.cost_cap:
        smaller = scaled_size(ck.task, size, 0.8)
        size = smaller if smaller < size else base
    budget = budget_at(size)
    n = int(min(cfg.n_base, max(cfg.n_min, cfg.cost_cap // max(1.0, budget * iteration_cost(ck, size)))))
    note = ""
    if size != want:
        note = (f"size {want} ({factor}x) would cost more than the cap ({cfg.cost_cap:.2g} problems x cells x "
                f"iterations x width^2 "
                f"with {cfg.n_min} problems); ran size {size}, the largest that fits")
    return Run(size=size, factor=factor, n=n, budget=budget, note=note)


def growth(done: list[tuple[int, int]]) -> float:
    """The exponent p of needed iterations ~ size^p from the last two solved sizes (size, iterations), clamped
    to [1, 2] (at least linear, at most quadratic); 1 with fewer than two."""
    if len(done) < 2:
        return 1.0
    (s1, k1), (s2, k2) = done[-2], done[-1]
    if s2 == s1:
        return 1.0
    return float(min(2.0, max(1.0, math.log(max(k2, 1) / max(k1, 1)) / math.log(s2 / s1))))


def looped_budget(ck: Checkpoint, size: int, done: list[tuple[int, int]], cfg: ReportConfig) -> int:
    """Budget at a size. Before any size is solved: base_budget x the training iterations. Then 3x the
    iterations the last solved size needed, grown to this size at the observed rate (`growth`), at least twice
    the training iterations; never above the cap."""
    layers = ck.config.layers
    if not done:
        want = cfg.base_budget * layers
    else:
        s_last, k_last = done[-1]
        want = max(2 * layers, math.ceil(3 * k_last * (size / s_last) ** growth(done)))
    return int(min(cfg.iter_cap, MAX_ITERS, want))


# --- one run -------------------------------------------------------------------------------------------------

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
    acc, res, nfe = [], [], []
    stop, first_solved, last = "budget", None, None
    t0 = time.perf_counter()
    for r in probe(ck.model, task, xs, ys, run.budget, device=device, early_stop=True, precision=precision):
        last = r
        acc.append(r.accuracy)
        res.append(None if math.isnan(r.residual) else r.residual)
        nfe.append(r.nfe)
        if r.accuracy >= 1.0:
            first_solved = r.k if first_solved is None else first_solved
            if not ck.model.fixed_depth and r.k >= 2 * first_solved + 10:
                stop = "solved"
                break
        else:
            first_solved = None
    seconds = time.perf_counter() - t0
    if stop == "budget" and len(acc) < ck.model.budget(run.budget):
        stop = "converged"
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


# --- figures -------------------------------------------------------------------------------------------------

def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.02}, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      height=420, width=820, margin={"l": 60, "r": 20, "t": 50, "b": 45})
    return fit_legend(fig, per_row=2)  # every entry listed under the chart, however many curves


def _line(c: Curve) -> dict:
    """Colour by family (a lighter tint for a non-default arch such as the transformer), dash by size multiple."""
    color = family_color(c.family)
    if c.arch != get_task(c.task).default_arch:
        color = lighter(color)
    return {"color": color, "dash": _DASH.get(c.factor, "solid")}


def accuracy_figure(task: str, curves: list[Curve]) -> go.Figure:
    """Accuracy vs iterations: colour by family, dash by size multiple."""
    fig = go.Figure()
    for c in curves:
        fig.add_trace(go.Scatter(x=list(range(1, len(c.accuracy) + 1)), y=c.accuracy, mode="lines",
                                 name=f"{c.checkpoint} @ {c.size} (n={c.n})", line=_line(c),
                                 legendgroup=f"{c.checkpoint} @ {c.size} (n={c.n})"))
    for c in curves:  # 95% Wilson bands, after the curves, each in its curve's legend group
        add_wilson_band(fig, list(range(1, len(c.accuracy) + 1)), np.asarray(c.accuracy), c.n, _line(c)["color"],
                        f"{c.checkpoint} @ {c.size} (n={c.n})")
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(range=[-0.02, 1.02])
    return _layout(fig, f"{task}: accuracy vs iterations", "iterations (log)", "exact-match accuracy")


def residual_figure(task: str, curves: list[Curve]) -> go.Figure:
    fig = go.Figure()
    for c in curves:
        y = [v if v is not None and v > 0 else None for v in c.residual]
        fig.add_trace(go.Scatter(x=list(range(1, len(y) + 1)), y=y, mode="lines",
                                 name=f"{c.checkpoint} @ {c.size}", line=_line(c)))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_SMALL)
    return _layout(fig, f"{task}: residual ||z_k - z_(k-1)|| / ||z_k|| (DEQ: solver residual)",
                   "iterations (log)", "relative residual (log)")


def scaling_figure(task: str, by_ck: dict[str, list[Curve]], fits: dict[str, dict | None]) -> go.Figure:
    """Iterations to near-best accuracy vs problem size, log-log, one line per looped checkpoint."""
    fig = go.Figure()
    for name, curves in by_ck.items():
        fit = fits.get(name)
        label = name + (f" (~ size^{fit['exponent']:.2f})" if fit else "")
        fig.add_trace(go.Scatter(x=[c.size for c in curves], y=[c.near_best_iter for c in curves],
                                 mode="lines+markers", name=label,
                                 text=[f"best {c.best_accuracy:.0%}" for c in curves],
                                 hovertemplate="size %{x}: %{y} iterations, %{text}<extra></extra>",
                                 line={"color": _line(curves[0])["color"]},
                                 marker={"symbol": ["circle" if c.best_accuracy >= 0.5 else "x" for c in curves],
                                         "size": 9}))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_AXIS)
    return _layout(fig, f"{task}: iterations to reach the best accuracy vs size (x: best < 50%)",
                   "problem size (log)", "iterations (log)")


def write_figure(fig: go.Figure, folder: Path, stem: str, formats: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Write the figure in each format; returns (files written, reasons for formats that could not be)."""
    folder.mkdir(parents=True, exist_ok=True)
    files, why = [], []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "html":  # plotly.js once per folder, beside the pages: they open offline
            js = folder / "plotly.min.js"
            if not js.exists():
                from plotly.offline import get_plotlyjs

                js.write_text(get_plotlyjs())
            path.write_text(fig.to_html(include_plotlyjs="directory", full_html=True))
        else:
            ok, reason = export.static_export_status()
            if not ok:
                why.append(f"{fmt.upper()} not written: {reason}")
                continue
            try:
                path.write_bytes(export.to_image(fig, fmt))
            except Exception as e:  # a browser that fails to start: the other formats still go out
                why.append(f"{fmt.upper()} not written: {type(e).__name__}: {e}")
                continue
        files.append(path.name)
    return files, why


# --- memory --------------------------------------------------------------------------------------------------

def memory_rows(case: DEQCase, cfg: ReportConfig, device: torch.device) -> tuple[list[dict], list[str]]:
    """Bytes saved for backward per mode and forward iterations (exactly that many: tol 0), batch 2."""
    import copy

    model = copy.deepcopy(case.model).to(device)
    model.settings = model.settings.updated(backward_solver={"max_iter": 30})  # a private copy: its own default
    task = get_task(case.task)
    size = min(case.size, 32)
    xs, ys = task.generate(size, 2, TEST_SEED)
    x, y = task.encode(torch.as_tensor(xs)).to(device), torch.as_tensor(ys).long().to(device)
    rows, notes = [], []
    budget = memory_budget(device)
    for mode in ("unrolled", "implicit", "jfb"):
        for k in cfg.memory_iters:
            if mode == "unrolled" and unrolled_bytes_estimate(model, x, y, k) > budget / 4:
                notes.append(f"unrolled at {k} iterations skipped: it would not fit this machine's memory")
                continue
            r = measure_step(model, x, y, mode, k, tol=0.0)
            rows.append({"model": case.name, "size": size, "batch": 2, **{q: r[q] for q in (
                "mode", "iters", "saved_bytes", "peak_bytes", "seconds", "nfe")}})
    return rows, notes


# --- the report ----------------------------------------------------------------------------------------------

def _auroc(row: dict) -> str:
    au = row.get("verifier_auroc")
    return f"{au:.2f} ({row.get('verifier', 'residual')})" if au is not None else "n/a"


def _looped(ck: Checkpoint) -> bool:
    return not ck.model.fixed_depth


def task_report(task: str, cks: list[Checkpoint], cfg: ReportConfig, device: torch.device,
                say: Callable[[str], None]) -> dict:
    """Every run of one task: the curves at each size, the scaling fits and the notes."""
    cks = sorted(cks, key=lambda c: (c.model.order, c.name))
    base = max(training_size(c) for c in cks)
    factors = sorted(set(cfg.curve_factors) | set(cfg.scaling_factors))
    sizes = report_sizes(task, base, factors)
    curves: list[Curve] = []
    notes: list[str] = []
    for ck in cks:
        if not _looped(ck):
            for f in cfg.curve_factors:
                run = plan_run(ck, base, f, lambda size, ck=ck: ck.config.layers, cfg, sizes[f])
                say(f"{task}: {ck.name} at size {run.size}, n={run.n}, depth {ck.config.layers}")
                curves.append(run_curve(ck, run, TEST_SEED, device, ck_precision(ck, cfg, device)))
            continue
        done: list[tuple[int, int]] = []  # (size, iterations to near-best) of the sizes solved so far
        for f in factors:
            run = plan_run(ck, base, f, lambda size, ck=ck, done=list(done): looped_budget(ck, size, done, cfg), cfg,
                           sizes[f])
            ran = [c.size for c in curves if c.checkpoint == ck.name]
            if f > 1 and ran and run.size <= max(ran):  # capped below a size already run: a smaller "4x" misleads
                if sizes[f] > max(ran):
                    notes.append(f"{ck.name}: size {sizes[f]} ({f}x) is over the cost cap even with "
                                 f"{cfg.n_min} problems, and every size that fits was already run; not run")
                continue
            say(f"{task}: {ck.name} at size {run.size}, n={run.n}, budget {run.budget}")
            c = run_curve(ck, run, TEST_SEED, device, ck_precision(ck, cfg, device))
            curves.append(c)
            if c.best_accuracy >= 0.5 and not c.still_improving:
                done.append((c.size, c.near_best_iter))
        notes += [f"{ck.name}: {c.note}" for c in curves if c.checkpoint == ck.name and c.note]
    by_ck: dict[str, list[Curve]] = {}
    for c in curves:
        if not c.fixed_depth:
            by_ck.setdefault(c.checkpoint, []).append(c)
    fits = {name: scaling_fit(cs) for name, cs in by_ck.items()}
    models = [{"checkpoint": c.name, "family": c.family, "arch": c.arch, "params": c.model.num_params(),
               "width": c.config.width, "train_sizes": c.card.get("train_sizes") or [training_size(c)],
               "train_iters": c.config.layers} for c in cks]
    return {"task": task, "base_size": base, "curves": curves, "by_checkpoint": by_ck, "fits": fits,
            "notes": notes, "models": models}


def difficulty_ladder(task, size: int, points: int) -> list[int]:
    """`points` difficulties spread over what the task can draw at this size, up to what it draws without strain
    (a task may say so: `difficulty_drawable(size)`, mazes the paths a dfs maze usually has)."""
    lo, hi = task.difficulty_range(size)
    drawable = optional(task, "difficulty_drawable")
    if drawable is not None:
        hi = max(lo + 1, min(hi, drawable(size)))
    lo = max(lo, 1)
    return sorted({int(round(v)) for v in np.linspace(lo + (hi - lo) / (2 * points), hi, points)})


def difficulty_rows(cks: list[Checkpoint], cfg: ReportConfig, device: torch.device,
                    say: Callable[[str], None]) -> list[dict]:
    """Iterations needed against difficulty: every looped checkpoint of a task that draws problems at a difficulty,
    at 4x the training size (grids: 2x the side), on problems drawn at a ladder of difficulties; per difficulty
    the accuracy at the end,
    the median iteration from which a solved problem stays right, and the physical limit difficulty / reach."""
    from tasks.difficulty import main_name
    from ttc.engine.evaluate import evaluate

    rows = []
    for ck in sorted(cks, key=lambda c: (c.task, c.model.order, c.name)):
        task = get_task(ck.task)
        if ck.model.fixed_depth:
            continue
        if not hasattr(task, "difficulty_range"):  # cannot draw at a difficulty: group by the measured one, if any
            if main_name(task):
                rows += measured_difficulty_rows(ck, cfg, device, say)
            continue
        size = scaled_size(ck.task, training_size(ck), (2 if cfg.quick else 4) ** (1 / task.spatial_dims))
        reach = ck.model.reach_per_iteration
        budget = int(min(cfg.iter_cap, max(4 * ck.config.layers, 3 * size // max(1, reach or 1))))
        n = max(cfg.n_min, int(min(cfg.n_base // 4, cfg.cost_cap // max(1.0, budget * iteration_cost(ck, size)))))
        for d in difficulty_ladder(task, size, 3 if cfg.quick else 5):
            say(f"difficulty: {ck.name} at size {size}, {main_name(task)} {d}, n={n}, budget {budget}")
            try:
                x, y = task.generate(size, n, TEST_SEED + 11, difficulty=d)
            except TaskError as e:
                rows.append({"checkpoint": ck.name, "task": ck.task, "size": size, "difficulty": d, "skipped": str(e)})
                continue
            c = evaluate(ck.model, task, x, y, budget, device=device, settings=ck.model.settings_from_card(ck.card),
                         precision=ck_precision(ck, cfg, device), early_stop=True)
            solved = [k for k in c.solved_at if k is not None]
            rows.append({"checkpoint": ck.name, "task": ck.task, "family": ck.family, "size": size, "n": n,
                         "budget": budget, "measure": main_name(task), "difficulty": d,
                         "accuracy": c.accuracy[-1], "solved": len(solved),
                         "median_iters": float(np.median(solved)) if solved else None,
                         "reach": reach, "bound": d / reach if reach else None,
                         "ratio_to_bound": float(np.median(solved) / (d / reach)) if solved and reach else None})
    return rows


def measured_difficulty_rows(ck: Checkpoint, cfg: ReportConfig, device: torch.device,
                             say: Callable[[str], None]) -> list[dict]:
    """For a task that measures difficulty but cannot draw problems at one (sudoku: propagation rounds): problems at
    the training size and the hardest size of its ladder, grouped by their measured difficulty; per group the
    accuracy at the end and the median iteration from which a solved problem stays right. A value below 1 (sudoku's
    -1, "needs search") is a group of its own, left out of the fits."""
    from tasks.difficulty import main_name, measure
    from ttc.engine.evaluate import evaluate

    task = get_task(ck.task)
    base = training_size(ck)
    ladder = sorted(optional(task, "size_ladder") or [base])
    sizes = sorted({base, ladder[-1] if not cfg.quick else min((s for s in ladder if s > base), default=base)})
    budget = int(min(cfg.iter_cap, 8 * ck.config.layers))
    rows = []
    for size in sizes:
        n = max(cfg.n_min, int(min(cfg.n_base, cfg.cost_cap // max(1.0, budget * iteration_cost(ck, size)))))
        say(f"difficulty: {ck.name} at size {size}, n={n}, budget {budget}, grouped by {main_name(task)}")
        x, y = task.generate(size, n, TEST_SEED + 13)
        d = measure(task, x, y)[main_name(task)]
        c = evaluate(ck.model, task, x, y, budget, device=device, settings=ck.model.settings_from_card(ck.card),
                     precision=ck_precision(ck, cfg, device), early_stop=True)
        right = np.asarray([k is not None for k in c.solved_at], dtype=bool)  # right at the end, and stays so
        for v in sorted(set(d.tolist())):
            pick = np.flatnonzero(d == v)
            solved = [c.solved_at[i] for i in pick if c.solved_at[i] is not None]
            rows.append({"checkpoint": ck.name, "task": ck.task, "family": ck.family, "size": size, "n": len(pick),
                         "budget": budget, "measure": main_name(task), "difficulty": int(v), "measured": True,
                         "accuracy": float(right[pick].mean()), "solved": len(solved),
                         "median_iters": float(np.median(solved)) if solved else None,
                         "reach": ck.model.reach_per_iteration, "bound": None, "ratio_to_bound": None})
    return rows


def difficulty_fits(rows: list[dict]) -> dict[str, dict]:
    """Per checkpoint: the exponent of median iterations against difficulty (log-log least squares over the
    difficulties with at least half the problems solved) and the median ratio of iterations to the limit."""
    out = {}
    for name in dict.fromkeys(r["checkpoint"] for r in rows):
        pts = [r for r in rows if r["checkpoint"] == name and r.get("median_iters") and r.get("n")
               and r["solved"] >= r["n"] / 2 and r["difficulty"] >= 1]
        exp = None
        if len(pts) >= 2 and len({r["difficulty"] for r in pts}) >= 2:
            exp = float(np.polyfit(np.log([r["difficulty"] for r in pts]), np.log([r["median_iters"] for r in pts]),
                                   1)[0])
        ratios = [r["ratio_to_bound"] for r in pts if r.get("ratio_to_bound")]
        out[name] = {"exponent": exp, "ratio_to_bound": float(np.median(ratios)) if ratios else None,
                     "points": len(pts)}
    return out


def difficulty_figure(task: str, rows: list[dict]) -> go.Figure:
    """Median iterations to a lasting right answer against difficulty, one line per checkpoint, with each reach's
    physical limit dashed; x marks a difficulty where fewer than half the problems were solved."""
    fig = go.Figure()
    # measured groups (sudoku) draw one line per checkpoint and size; "needs search" (-1) has no place on the axis
    rows = [dict(r, checkpoint=f"{r['checkpoint']} @ {r['size']}") if r.get("measured") else r for r in rows
            if r.get("difficulty", 0) >= 0 or not r.get("measured")]
    for name in dict.fromkeys(r["checkpoint"] for r in rows):
        pts = [r for r in rows if r["checkpoint"] == name and r.get("n")]
        color = get_family(pts[0]["family"]).color if pts else None
        fig.add_trace(go.Scatter(x=[r["difficulty"] for r in pts], y=[r["median_iters"] for r in pts],
                                 mode="lines+markers", name=name, line={"color": color},
                                 marker={"symbol": ["circle" if r["solved"] >= r["n"] / 2 else "x" for r in pts],
                                         "size": 9},
                                 text=[f"accuracy {r['accuracy']:.0%}" for r in pts],
                                 hovertemplate="difficulty %{x}: %{y} iterations, %{text}<extra></extra>"))
        if pts and pts[0].get("reach"):
            fig.add_trace(go.Scatter(x=[r["difficulty"] for r in pts], y=[r["bound"] for r in pts], mode="lines",
                                     name=f"{name}: limit (reach {pts[0]['reach']})",
                                     line={"color": color, "dash": "dash", "width": 1}))
    measure = next((r.get("measure") for r in rows if r.get("measure")), "difficulty")
    return _layout(fig, f"{task}: iterations needed against difficulty (dashed: the physical limit)",
                   f"difficulty ({measure})", "median iteration settled right")


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (None with fewer than 3 points or a constant side)."""
    if len(a) < 3:
        return None
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def analysis_rows(cks: list[Checkpoint], per_task: list[dict], cfg: ReportConfig, device: torch.device,
                  say: Callable[[str], None]) -> dict:
    """`python -m ttc analyze` for every looped checkpoint at its training size with twice its training iterations
    per start, beside its best accuracy at 4x the task's training size (from the curves), and the rank correlation
    of path independence (AA score) with that extrapolation across the zoo (Anil et al. 2022 found a positive one)."""
    from ttc.engine.analyze import analyze, best_halting

    rows = []
    four_x = {c.checkpoint: c.best_accuracy for tr in per_task for c in tr["curves"] if c.factor == 4}
    for ck in cks:
        if not _looped(ck):
            continue
        size, iters, starts = training_size(ck), 2 * ck.config.layers, cfg.analysis_starts
        total = (2 * starts - 1) * iters
        n = int(min(cfg.analysis_n, max(cfg.n_min, cfg.cost_cap // max(1.0, total * iteration_cost(ck, size)))))
        say(f"analysis: {ck.name} at size {size}, n={n}, {starts} starts x {iters} iterations")
        task = get_task(ck.task)
        x, y = task.generate(size, n, TEST_SEED + 7)
        t0 = time.perf_counter()
        out = analyze(ck.model, task, x, y, iters, starts=starts, seed=TEST_SEED, device=device,
                      settings=ck.model.settings_from_card(ck.card), precision=ck_precision(ck, cfg, device))
        pi, fp, br = out["path_independence"], out["fixed_point_vs_iterate"], out["breadth"]["points"]
        rows.append({
            "checkpoint": ck.name, "task": ck.task, "family": ck.family, "size": size, "n": n, "iters": iters,
            "starts": starts, "aa_score": pi["aa_score"],
            "largest_distance": pi["largest_mean_distance"],
            "same_fixed_point": pi.get("same_fixed_point"),
            "fixed_point_accuracy": fp["fixed_point_accuracy"], "fixed_point_iters": fp["iters"],
            "best_iterate_accuracy": fp["best_iterate_accuracy"], "best_iter": fp["best_iter"],
            "best_iterate_beats_fixed_point": fp["best_iterate_beats_fixed_point"],
            "settled_fraction": fp["settled_fraction"],
            "halting": best_halting(out), "breadth": br[-1], "accuracy_4x": four_x.get(ck.name),
            "verifier": out["breadth"]["verifier"], "verifier_auroc": out["breadth"]["verifier_auroc"],
            "seconds": round(time.perf_counter() - t0, 1),
        })
    pairs = [(r["aa_score"], r["accuracy_4x"]) for r in rows if r["accuracy_4x"] is not None
             and math.isfinite(r["aa_score"])]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None
    return {"rows": rows, "spearman_aa_vs_4x": rho, "points": len(pairs)}


def _check(formats: tuple[str, ...], tasks: list[str] | None) -> None:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown figure formats {bad}; accepted: {', '.join(FORMATS)}")
    unknown = [t for t in tasks or [] if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known tasks: {', '.join(TASKS)}")


def run_report(out: str | Path, folder: str | Path = "checkpoints", tasks: list[str] | None = None,
               quick: bool = False, formats: tuple[str, ...] = FORMATS, device: str | None = "cpu",
               on_event: Callable[[str], None] | None = None, command: str = "", precision: str = "auto") -> dict:
    """Run everything, then `render` the figures, results.json and summary.md under out; return the results."""
    say = on_event or (lambda msg: None)
    _check(formats, tasks)
    dev = resolve_device(device)
    cfg = replace(report_config(quick), precision=precision)
    t0 = time.perf_counter()
    cks, notes = load_zoo(folder)
    wanted = [t for t in TASKS if t in (tasks or TASKS)]
    per_task = []
    for task in wanted:
        mine = [c for c in cks if c.task == task]
        if not mine:
            notes.append(f"{task}: no checkpoint in {folder}; nothing to report")
            continue
        per_task.append(task_report(task, mine, cfg, dev, say))
    say("memory table")
    cases, deq_notes = deq_cases([c for c in cks if c.task in wanted] or cks, uses="the memory table uses")
    mem_rows: list[dict] = []
    for case in cases:
        rows, mnotes = memory_rows(case, cfg, dev)
        mem_rows += rows
        notes += [f"{case.name}: {m}" for m in mnotes]
    notes += deq_notes
    say("iterations needed against difficulty")
    difficulty = difficulty_rows([c for c in cks if c.task in wanted], cfg, dev, say)
    say("analysis (path independence, fixed points, halting, breadth)")
    analysis = analysis_rows([c for c in cks if c.task in wanted], per_task, cfg, dev, say)
    results = {
        "command": command, "quick": quick, "machine": machine(dev),
        "seconds": round(time.perf_counter() - t0, 1), "config": asdict(cfg), "folder": str(folder),
        "checkpoints": [c.name for c in cks], "seed": TEST_SEED,
        "tasks": [{"task": tr["task"], "base_size": tr["base_size"], "notes": tr["notes"], "models": tr["models"],
                   "curves": [asdict(c) for c in tr["curves"]],
                   "scaling": {k: v for k, v in tr["fits"].items()}} for tr in per_task],
        "memory": mem_rows, "analysis": analysis, "notes": notes, "difficulty": difficulty,
    }
    return render(results, out, formats)


def _curve(d: dict) -> Curve:
    """A curve read back from results.json (an older file without fixed_depth: its family's class says)."""
    vals = {k: d[k] for k, f in Curve.__dataclass_fields__.items() if f.init and k in d}
    if "fixed_depth" not in vals:
        try:
            vals["fixed_depth"] = get_family(d["family"]).fixed_depth
        except ConfigError:
            vals["fixed_depth"] = False
    return Curve(**vals)


def render(results: dict, out: str | Path, formats: tuple[str, ...] = FORMATS) -> dict:
    """Figures, results.json and summary.md under out from a report's results (a fresh run's, or a results.json
    read back: `python -m ttc report --from-results`). Returns the results with the figures listed."""
    _check(formats, None)
    out = Path(out)
    figdir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[str]] = {}
    figure_notes: list[str] = []
    shown_factors = set(results["config"]["curve_factors"])

    def fig_out(fig: go.Figure, stem: str) -> None:
        files, why = write_figure(fig, figdir, stem, formats)
        figures[stem] = files
        figure_notes.extend(w for w in why if w not in figure_notes)

    for t in results["tasks"]:
        task, curves = t["task"], [_curve(d) for d in t["curves"]]
        shown = [c for c in curves if c.factor in shown_factors]
        fig_out(accuracy_figure(task, shown), f"{task}-accuracy")
        looped = [c for c in shown if not c.fixed_depth]
        if looped:
            fig_out(residual_figure(task, looped), f"{task}-residual")
        by_ck: dict[str, list[Curve]] = {}
        for c in curves:
            if not c.fixed_depth:
                by_ck.setdefault(c.checkpoint, []).append(c)
        if by_ck:
            fig_out(scaling_figure(task, by_ck, t["scaling"]), f"{task}-iterations-vs-size")
    for task in dict.fromkeys(r["task"] for r in results.get("difficulty") or []):
        rows = [r for r in results["difficulty"] if r["task"] == task and not r.get("skipped")]
        if rows:
            fig_out(difficulty_figure(task, rows), f"{task}-iterations-vs-difficulty")
    mem_rows = results["memory"]
    for name in dict.fromkeys(r["model"] for r in mem_rows):
        fig_out(memory_modes_figure([r for r in mem_rows if r["model"] == name]), f"memory-{name}")
    results = {**results, "figures": figures, "figure_notes": figure_notes, "formats": list(formats)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_plain))
    (out / "summary.md").write_text(summary_markdown(results))
    return results


def _plain(v):
    """numpy scalars as Python numbers for JSON."""
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


# --- the summary ---------------------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB"


def longer_verdict(accuracy: list[float], trained_at: int) -> tuple[float | None, str]:
    """(accuracy at the training iteration count, where thinking longer helps or stops) for one looped curve."""
    acc = np.asarray(accuracy, dtype=np.float64)
    at_train = float(acc[min(trained_at, len(acc)) - 1]) if len(acc) else None
    best = float(acc.max())
    near = int(np.argmax(acc >= best - 0.01)) + 1
    if best <= 0:
        return at_train, "solves none within the budget"
    if best < 0.05:
        return at_train, f"solves almost none (best {_pct(best)})"
    if best - float(acc[-1]) > 0.01:
        return at_train, f"helps up to {near} iterations, then falls to {_pct(float(acc[-1]))} (overthinking)"
    if near > trained_at and best - (at_train or 0.0) > 0.01:
        return at_train, f"helps: from {_pct(at_train)} at {trained_at} to {_pct(best)} by {near}, then holds"
    return at_train, f"stops paying at {near} iterations (within a point of the best) and holds"


def longer_lines(t: dict) -> list[str]:
    """Per looped checkpoint and size: does running longer than the training iterations help, and where it stops."""
    trained = {m["checkpoint"]: m["train_iters"] for m in t["models"]}
    rows = [c for c in t["curves"] if not c.get("fixed_depth") and c["accuracy"]]
    if not rows:
        return []
    out = ["Thinking longer than trained (a DEQ's solver steps, an EBM's descent steps, a loop's iterations): "
           "accuracy at the training iteration count against the best and the end of the run (its last iteration: "
           "the budget, or earlier where every state stopped changing or every problem stayed solved).", "",
           "| checkpoint | size | trained at | accuracy there | best (within 1 pt at) | end of run (at) | longer |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in rows:
        k = trained.get(c["checkpoint"], 1)
        at, verdict = longer_verdict(c["accuracy"], k)
        out.append(f"| {c['checkpoint']} | {c['size']} | {k} | {_pct(at) if at is not None else 'n/a'} | "
                   f"{_pct(c['best_accuracy'])} ({c['near_best_iter']}) | {_pct(c['final_accuracy'])} "
                   f"({len(c['accuracy'])}) | {verdict} |")
    return out + [""]


def summary_markdown(res: dict) -> str:
    """summary.md: how it was made, then per task the tables and figures, then memory."""
    m = res["machine"]
    cfg = res["config"]
    lines = ["# TTC Lab findings", "",
             f"Made by `{res['command'] or 'python -m ttc report'}` in {res['seconds'] / 60:.1f} min on {m['cpu']} "
             f"({m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads, device {m['device']}, "
             f"load average {m['load_average']}).", "",
             f"Test problems from seed {res['seed']} (never used in training). Exact-match accuracy: a problem "
             f"counts only if every output cell is right. Up to {cfg['n_base']} problems per run; where a run "
             f"would cost more than {cfg['cost_cap']:.2g} (problems x cells x iterations x width^2) the problems are "
             f"cut (to no fewer "
             f"than {cfg['n_min']}), and the column n says how many were used. Budgets: "
             f"{cfg['base_budget']}x the training iterations at the training size, then 3x the iterations the last "
             f"solved size (best accuracy >= 50%) needed, grown with size at the rate seen between the last two "
             f"solved sizes (between linear and quadratic; cap {cfg['iter_cap']}). A curve ends early once no "
             "sample's state changes any more (relative change < 1e-4; a DEQ's solver tolerance) or once every "
             "problem has been solved for as many iterations again (the `stop` column).", ""]
    if res.get("rendered_by"):
        lines += [f"Figures and this summary rendered again from the run's results.json by `{res['rendered_by']}` "
                  f"(formats: {', '.join(res['formats'])}).", ""]
    if res["quick"]:
        lines += ["**Quick run** (`--quick`): fewer sizes, problems and iterations; not the findings.", ""]
    for note in res["notes"] + res["figure_notes"]:
        lines.append(f"- {note}")
    if res["notes"] or res["figure_notes"]:
        lines.append("")
    figs = res["figures"]

    def img(stem: str) -> list[str]:
        files = figs.get(stem, [])
        pic = next((f for f in files if f.endswith(".png")), None) or next((f for f in files if f.endswith(".svg")),
                                                                          None)
        html = next((f for f in files if f.endswith(".html")), None)
        out = [f"![{stem}](figures/{pic})"] if pic else []
        if html:
            out.append(f"[interactive: figures/{html}](figures/{html})")
        return out + [""] if out else []

    for t in res["tasks"]:
        task = t["task"]
        base = t["base_size"]
        lines += [f"## {task}", "",
                  "| checkpoint | family | arch | params | trained on sizes | trained at iterations |",
                  "| --- | --- | --- | ---: | --- | ---: |"]
        for md in t["models"]:
            lines.append(f"| {md['checkpoint']} | {md['family']} | {md['arch']}, width {md['width']} | "
                         f"{md['params']:,} | {', '.join(map(str, md['train_sizes']))} | {md['train_iters']} |")
        lines += ["", f"Sizes are multiples of {base}, the largest training size of the task's checkpoints "
                  "(explicit models: iterations are layers, their depth).", "",
                  f"| checkpoint | family | size | x {base} | n | budget | best | at iter | within 1 pt at | final "
                  "| stop | converged | s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for c in t["curves"]:
            cut = " (still improving)" if c["still_improving"] else ""
            lines.append(f"| {c['checkpoint']} | {c['family']} | {c['size']} | {c['size'] / base:.3g} | "
                         f"{c['n']} | {c['budget']} | {_pct(c['best_accuracy'])}{cut} | {c['best_iter']} | "
                         f"{c['near_best_iter']} | {_pct(c['final_accuracy'])} | {c['stop']} | "
                         f"{c['converged']}/{c['n']} | {c['seconds']:.1f} |")
        lines.append("")
        for note in t["notes"]:
            lines.append(f"- {note}")
        lines += img(f"{task}-accuracy")
        lines += img(f"{task}-residual")
        lines += longer_lines(t)
        if t["scaling"]:
            lines += ["Iterations to reach the best accuracy (first iteration within one percentage point of it) "
                      "as the problem grows; the exponent is the slope of log(iterations) on log(size) over the "
                      "sizes where the best accuracy is at least 50% and the budget did not cut the curve.", "",
                      "| checkpoint | size: iterations (best accuracy) | iterations ~ size^k |", "| --- | --- | ---: |"]
            for name, fit in t["scaling"].items():
                pts = [c for c in t["curves"] if c["checkpoint"] == name]
                cells = ", ".join(f"{c['size']}: {c['near_best_iter']} ({_pct(c['best_accuracy'])})" for c in pts)
                k = f"{fit['exponent']:.2f}" if fit else "n/a (fewer than 2 sizes at >= 50%)"
                lines.append(f"| {name} | {cells} | {k} |")
            lines.append("")
            lines += img(f"{task}-iterations-vs-size")
    mrows = [r for r in res.get("difficulty") or [] if r.get("measured")]
    if mrows:
        lines += ["## Accuracy against measured difficulty", "",
                  "For a task whose problems cannot be drawn at a chosen difficulty (sudoku), problems at the "
                  "training size and the hardest size are grouped by their measured difficulty (sudoku: the rounds "
                  "of naked and hidden singles that solve the puzzle; -1: propagation stops, the puzzle needs "
                  "search). Per group: problems, accuracy at the end of the budget, and the median iteration from "
                  "which a solved problem stays right.", "",
                  "| checkpoint | size | budget | difficulty: n, accuracy, median iterations |",
                  "| --- | ---: | ---: | --- |"]
        for key in dict.fromkeys((r["checkpoint"], r["size"]) for r in mrows):
            pts = [r for r in mrows if (r["checkpoint"], r["size"]) == key]
            cells = "; ".join(f"{'search' if r['difficulty'] < 0 else r['difficulty']}: {r['n']}, "
                              f"{_pct(r['accuracy'])}, "
                              + (f"{r['median_iters']:g}" if r["median_iters"] is not None else "none") for r in pts)
            lines.append(f"| {key[0]} | {key[1]} | {pts[0]['budget']} | {cells} |")
        lines.append("")
    drows = [r for r in res.get("difficulty") or [] if not r.get("skipped") and not r.get("measured")]
    if drows:
        fits = difficulty_fits(drows)
        lines += ["## Iterations needed against difficulty", "",
                  "Each looped checkpoint at 4x its training size (mazes: 2x the side) on problems drawn at a "
                  "ladder of difficulties (the "
                  "task's main measure: prefix sums the dependency span, addition the longest carry chain, mazes the "
                  "path length; docs/difficulty.md). Iterations: the median over the solved problems of the "
                  "iteration from which the answer stays right. Limit: difficulty / the model's reach per iteration "
                  "(cells information moves per iteration; none for full attention or an external memory). "
                  "Exponent: log-log slope of iterations against difficulty over the difficulties at least half "
                  "solved; ratio: the median of iterations / limit, how far above the physical limit it runs.", "",
                  "| checkpoint | size | n | reach | difficulty: accuracy, median iterations (limit) | exponent | "
                  "x limit |", "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
        for name, fit in fits.items():
            pts = [r for r in drows if r["checkpoint"] == name]
            cells = "; ".join(f"{r['difficulty']}: {_pct(r['accuracy'])}, "
                              + (f"{r['median_iters']:g}" if r["median_iters"] is not None else "none")
                              + (f" ({r['bound']:.3g})" if r.get("bound") else "") for r in pts)
            exp = f"{fit['exponent']:.2f}" if fit["exponent"] is not None else "n/a"
            ratio = f"{fit['ratio_to_bound']:.2g}" if fit["ratio_to_bound"] is not None else "n/a"
            lines.append(f"| {name} | {pts[0]['size']} | {pts[0]['n']} | {pts[0]['reach'] or 'none'} | {cells} | "
                         f"{exp} | {ratio} |")
        lines.append("")
        for task in dict.fromkeys(r["task"] for r in drows):
            lines += img(f"{task}-iterations-vs-difficulty")
    an = res.get("analysis") or {}
    if an.get("rows"):
        rho = an["spearman_aa_vs_4x"]
        lines += ["## Path independence, fixed points, halting and breadth", "",
                  "`python -m ttc analyze` per looped checkpoint, at its training size with twice its training "
                  "iterations per start. AA: the asymptotic-alignment score (mean cosine similarity of the final "
                  "states from different initial states; Anil et al. 2022). Fixed point: accuracy after starts x "
                  "iterations from zeros, against the best iterate of that run. Halting: the rule that saves the "
                  "most compute while staying within a point of the best iterate. Breadth: best of all starts by "
                  "final residual (an EBM: final energy), against one run with the same NFE; the verifier's AUROC "
                  "separating right from wrong final answers (n/a when all are right or all wrong).", "",
                  "| checkpoint | n | AA | largest distance | fixed point (iters) | best iterate (at) | best beats end "
                  "| halting: rule, NFE, saved | breadth vs depth | verifier AUROC | 4x size best |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |"]
        for r in an["rows"]:
            h = r["halting"]
            halt = f"{h['rule']} {h['value']:g}, {h['mean_nfe']:.1f}, {_pct(h['compute_saved'])}" if h else "none"
            b = r["breadth"]
            four = _pct(r["accuracy_4x"]) if r["accuracy_4x"] is not None else "n/a"
            lines.append(f"| {r['checkpoint']} | {r['n']} | {r['aa_score']:.4f} | {r['largest_distance']:.2g} | "
                         f"{_pct(r['fixed_point_accuracy'])} ({r['fixed_point_iters']}) | "
                         f"{_pct(r['best_iterate_accuracy'])} ({r['best_iter']}) | "
                         f"{_pct(r['best_iterate_beats_fixed_point'])} | {halt} | "
                         f"{_pct(b['breadth_accuracy'])} vs {_pct(b['depth_accuracy'])} ({b['nfe']} NFE) | "
                         f"{_auroc(r)} | {four} |")
        lines += ["", f"Rank correlation (Spearman) of the AA score with the best accuracy at 4x the training size, "
                  f"over {an['points']} checkpoints: " + (f"{rho:.2f}." if rho is not None else
                                                          "not defined (fewer than 3 points or a constant side)."), ""]
    if res["memory"]:
        lines += ["## Training memory of a DEQ step", "",
                  "Bytes autograd saves for backward in one training step (batch 2), by backward mode and forward "
                  "iterations (exactly that many: tol 0); on CUDA also the peak above the baseline.", "",
                  "| model | size | mode | iterations | saved | CUDA peak | seconds |",
                  "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
        for r in res["memory"]:
            peak = _mib(r["peak_bytes"]) if r["peak_bytes"] is not None else "n/a (CPU)"
            lines.append(f"| {r['model']} | {r['size']} | {r['mode']} | {r['iters']} | {_mib(r['saved_bytes'])} | "
                         f"{peak} | {r['seconds']:.2f} |")
        lines.append("")
        for name in dict.fromkeys(r["model"] for r in res["memory"]):
            lines += img(f"memory-{name}")
    return "\n".join(lines).rstrip() + "\n"
