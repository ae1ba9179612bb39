"""The report's tables beyond the curves: training memory per backward mode, accuracy and iterations against
difficulty, and the analysis rows (path independence, fixed point against iterate, halting, breadth)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from models import UNROLLED
from tasks import TaskError, get_task, optional, tensors
from ttc.engine.analyze import ranks
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.memory import measure_step, memory_budget, unrolled_bytes_estimate
from ttc.engine.zoo import TEST_SEED, DEQCase, scaled_size, training_size
from ttc.tools.report.curves import ck_precision
from ttc.tools.report.plan import ReportConfig, iteration_cost, looped


def memory_rows(case: DEQCase, cfg: ReportConfig, device: torch.device) -> tuple[list[dict], list[str]]:
    """Bytes saved for backward per mode and forward iterations (exactly that many: tol 0), batch 2."""
    import copy

    model = copy.deepcopy(case.model).to(device)
    model.settings = model.settings.updated(backward_solver={"max_iter": 30})  # a private copy: its own default
    task = get_task(case.task)
    size = min(case.size, 32)
    xs, ys = task.generate(size, 2, TEST_SEED)
    x, y = tensors(task, xs, ys, device)
    rows, notes = [], []
    budget = memory_budget(device)
    for mode in model.memory_modes:
        for k in cfg.memory_iters:
            if mode == UNROLLED and unrolled_bytes_estimate(model, x, y, k) > budget / 4:
                notes.append(f"unrolled at {k} iterations skipped: it would not fit this machine's memory")
                continue
            r = measure_step(model, x, y, mode, k, tol=0.0)
            rows.append({"model": case.name, "size": size, "batch": 2, **{q: r[q] for q in (
                "mode", "iters", "saved_bytes", "peak_bytes", "seconds", "nfe")}})
    return rows, notes


def _auroc(row: dict) -> str:
    au = row.get("verifier_auroc")
    return f"{au:.2f} ({row.get('verifier', 'residual')})" if au is not None else "n/a"


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
        if optional(task, "difficulty_range") is None:  # cannot draw at a difficulty: group by the measured one, if any
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
        if not looped(ck):
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
    return analysis_of(rows)


def analysis_of(rows: list[dict]) -> dict:
    """The analysis section of the results: its rows and the rank correlation of AA score with accuracy at 4x."""
    pairs = [(r["aa_score"], r["accuracy_4x"]) for r in rows if r["accuracy_4x"] is not None
             and math.isfinite(r["aa_score"])]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None
    return {"rows": rows, "spearman_aa_vs_4x": rho, "points": len(pairs)}

