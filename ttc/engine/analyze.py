"""Where iterative refinement stops paying: path independence, the fixed point against the best iterate,
per-sample halting rules, and breadth (many starts) against depth at equal compute.

One `analyze(...)` call makes every run it needs on one batch of problems:
- the depth run: from the zero state for `starts x iters` iterations (its first `iters` are the zero start of
  path independence; its end is the "fixed point" of the fixed-point comparison and the depth side of breadth);
- one run of `iters` iterations from each further initial state: Gaussian noise at a few scales (relative to the
  RMS of the zero start's final state) and, when there are enough starts, other problems' final states.

Path independence follows Anil et al. (2022, "Path independent equilibrium models can better exploit test-time
computation"): their asymptotic-alignment (AA) score is the mean cosine similarity between the final states
reached from different initial states, 1 when every start ends in the same state. Breadth ranks starts by their
final residual (a family can name another series as its verifier, `breadth_series`: an EBM's energy), as EqR's
breadth scaling ranks starts by convergence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models import IterativeModel
from tasks import Task
from ttc.engine.probe import probe
from ttc.engine.records import Columns

NOISE_SCALES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # std of a noise start, in units of the zero start's final RMS
MAX_STARTS = 8
RESIDUAL_TOLS = (1e-2, 1e-3, 1e-4)
STABLE_FOR = (2, 5, 10)  # halting: prediction unchanged for m iterations
CONFIDENCES = (0.9, 0.99, 0.999)
SAME_POINT_FACTOR = 10.0  # DEQs: starts agree on the fixed point when their final states differ by < this x tol


@dataclass
class Run:
    """One run's per-iteration, per-sample record (K iterations, B samples)."""

    start: str
    accuracy: np.ndarray  # (K,)
    correct: np.ndarray  # (K, B) bool
    residual: np.ndarray  # (K, B) relative residual (NaN once a solver sample stopped)
    confidence: np.ndarray  # (K, B)
    changed: np.ndarray  # (K, B) bool: the prediction differs from the previous iteration's (k=1: True)
    converged: np.ndarray  # (K, B) bool: the family's / solver's own convergence flag
    diverged: np.ndarray  # (K, B) bool
    nfe: np.ndarray  # (K,) function evaluations so far
    verifier: np.ndarray | None  # (K, B) the family's breadth series (an EBM's energy), None: the residual
    states: dict[int, torch.Tensor]  # iteration -> (B, ...) state, kept where asked

    def upto(self, k: int) -> Run:
        """The first k iterations as a run of their own (the depth run's prefix is the zero start)."""
        return Run(start=self.start, accuracy=self.accuracy[:k], correct=self.correct[:k], residual=self.residual[:k],
                   confidence=self.confidence[:k], changed=self.changed[:k], converged=self.converged[:k],
                   diverged=self.diverged[:k], nfe=self.nfe[:k],
                   verifier=None if self.verifier is None else self.verifier[:k],
                   states={i: z for i, z in self.states.items() if i <= k})

    def score(self) -> np.ndarray:
        """(B,) the breadth verifier at the end, lower is better: the family's series when it names one, else
        each sample's last measured residual (a solver sample that stopped: where it stopped); inf if diverged."""
        if self.verifier is not None:
            v = self.verifier[-1].astype(np.float64)
        else:
            v = np.array([c[np.isfinite(c)][-1] if np.isfinite(c).any() else 0.0 for c in self.residual.T])
        return np.where(self.diverged[-1] | ~np.isfinite(v), math.inf, v)


def start_names(starts: int) -> list[str]:
    """The initial states of `starts` runs: zeros, noise at rising scales, and (from 5 starts) other problems'
    final states."""
    if not 1 <= starts <= MAX_STARTS:
        raise ValueError(f"starts must be in 1..{MAX_STARTS}, got {starts}")
    names = ["zeros"] + [f"noise x{s:g}" for s in NOISE_SCALES[:3]] + ["other problems"] + \
        [f"noise x{s:g}" for s in NOISE_SCALES[3:]]
    return names[:starts]


def _run(model: IterativeModel, task: Task, x: np.ndarray, y: np.ndarray, iters: int, start: str,
         z0: torch.Tensor | None, device, settings, keep: set[int], on_iter, precision: str | None = None) -> Run:
    solver = model.has_solver
    score_name = model.breadth_series
    cols = Columns({**dict.fromkeys(("accuracy", "correct", "residuals", "confidence", "converged", "diverged", "nfe")),
                    "changed": _Changed(len(x)),
                    "verifier": lambda r: (r.series or {}).get(score_name) if score_name else None})
    states: dict[int, torch.Tensor] = {}
    # a family without a solver gets tol 0: its raw relative change is kept for every iteration (the halting
    # rules apply their own tolerances); a solver keeps its own tol and stops where it converges
    for r in cols.collect(probe(model, task, x, y, iters, device=device, settings=settings, z0=z0,
                                keep_state=bool(keep), tol=None if solver else 0.0, precision=precision)):
        if r.k in keep:
            states[r.k] = r.z.detach().float().cpu().clone()
        if on_iter is not None:
            on_iter(1)
    f64 = np.float64
    return Run(start=start, accuracy=cols.array("accuracy"), correct=cols.stack("correct"),
               residual=cols.stack("residuals", dtype=f64), confidence=cols.stack("confidence", dtype=f64),
               changed=cols.stack("changed"), converged=cols.stack("converged"), diverged=cols.stack("diverged"),
               nfe=cols.array("nfe", np.int64),
               verifier=cols.stack("verifier", dtype=f64) if cols.cols["verifier"] else None, states=states)


class _Changed:
    """(B,) bool per record: whether each sample's answer differs from the previous iteration's (all, at the first)."""

    def __init__(self, n: int):
        self.n, self.prev = n, None

    def __call__(self, r) -> np.ndarray:
        preds = r.preds.reshape(self.n, -1)
        out = np.ones(self.n, bool) if self.prev is None else (preds != self.prev).any(1).numpy()
        self.prev = preds
        return out


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], -1).double()


def alignment(finals: list[torch.Tensor]) -> float:
    """The AA score: mean over samples and over pairs of starts of the cosine similarity of final states
    (1.0 with one start: nothing to disagree with)."""
    if len(finals) < 2:
        return 1.0
    flat = [_flat(z) for z in finals]
    sims = []
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            a, b = flat[i], flat[j]
            cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
            sims.append(cos)
    v = torch.stack(sims)
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else math.nan


def _rel_distance(z: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """(B,) ||z - ref|| / ||ref|| per sample."""
    a, b = _flat(z), _flat(ref)
    return ((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)).numpy()


def _finite_mean(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def ranks(v: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (Spearman's correlation, the AUROC's Mann-Whitney U)."""
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    for val in np.unique(v):
        tie = v == val
        r[tie] = r[tie].mean()
    return r


def auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of `score` (higher: more likely positive) for the boolean labels `positive`: the
    probability that a random positive outscores a random negative, ties counting half (Mann-Whitney U). None
    when one class is empty; non-finite scores rank lowest."""
    score = np.where(np.isfinite(score), score, -np.inf).astype(np.float64)
    pos, neg = score[positive], score[~positive]
    if pos.size == 0 or neg.size == 0:
        return None
    u = ranks(np.concatenate([pos, neg]))[:pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def halt_at(run: Run, rule: str, value: float) -> np.ndarray:
    """(B,) 1-based iteration at which each sample halts under the rule (the last iteration when it never does).
    rule: "residual" (relative residual below value; a solver sample that stopped counts as below its tol),
    "stable" (prediction unchanged for `value` iterations), "confidence" (mean class probability above value),
    "solver" (the family's own convergence flag)."""
    K, B = run.correct.shape
    if rule == "residual":
        below = run.residual < value
        if value > 0:
            below |= run.converged  # a stopped solver sample: its residual fell below its tol
        hit = below
    elif rule == "stable":
        m = int(value)
        unchanged = ~run.changed
        streak = np.zeros((K, B), dtype=np.int64)
        for k in range(K):
            streak[k] = np.where(unchanged[k], (streak[k - 1] if k else 0) + 1, 0)
        hit = streak >= m
    elif rule == "confidence":
        hit = run.confidence > value
    elif rule == "solver":
        hit = run.converged.copy()
    else:
        raise ValueError(f"unknown halting rule {rule!r}")
    first = np.where(hit.any(0), hit.argmax(0), K - 1)
    return first + 1


def halting_point(run: Run, rule: str, value: float) -> dict:
    """Accuracy, mean iterations and mean NFE when every sample halts by the rule; beside it the fixed-budget
    curve's smallest budget reaching that accuracy and the compute saved against it."""
    at = halt_at(run, rule, value)
    B = run.correct.shape[1]
    acc = float(run.correct[at - 1, np.arange(B)].mean())
    iters = float(at.mean())
    nfe = float(run.nfe[at - 1].mean())
    reach = np.nonzero(run.accuracy >= acc - 1e-12)[0]
    fixed = int(reach[0]) + 1 if reach.size else None
    saved = None if fixed is None else 1.0 - nfe / float(run.nfe[fixed - 1]) if run.nfe[fixed - 1] else None
    return {"rule": rule, "value": value, "accuracy": acc, "mean_iters": iters, "mean_nfe": nfe,
            "fixed_budget_for_same_accuracy": fixed, "compute_saved": saved}


def best_halting(result: dict, within: float = 0.01) -> dict | None:
    """The halting rule of an analysis that saves the most compute while staying within `within` of the best
    iterate's accuracy (None when no rule does)."""
    best = result["fixed_point_vs_iterate"]["best_iterate_accuracy"]
    keep = [r for r in result["halting"]["rules"] if r["compute_saved"] is not None and r["accuracy"] >= best - within]
    return max(keep, key=lambda r: r["compute_saved"]) if keep else None


def analyze(model: IterativeModel, task: Task, x: np.ndarray, y: np.ndarray, iters: int, starts: int = 5,
            seed: int = 0, device=None, settings=None, on_iter: Callable[[int], None] | None = None,
            on_stage: Callable[[str, dict], None] | None = None, precision: str | None = None) -> dict:
    """The four analyses on problems (x, y) with budget `iters` per start; see the module doc. on_iter(1) after
    every iteration of every run; on_stage(name, partial_result) as each part completes (the page draws it)."""
    if model.fixed_depth:
        raise ValueError(f"{model.family_name} models have a fixed depth: there is no iteration to analyse")
    names = start_names(starts)
    settings = model.run_settings(settings)
    depth_iters = starts * iters
    depth = _run(model, task, x, y, depth_iters, "zeros", None, device, settings, {iters, depth_iters}, on_iter,
                 precision)
    zero_final = depth.states[iters]
    rms = float(_flat(zero_final).pow(2).mean().sqrt()) or 1.0
    gen = torch.Generator().manual_seed(int(seed) + 17)
    runs = [depth.upto(iters)]
    for name in names[1:]:
        if name == "other problems":
            z0 = torch.roll(zero_final, 1, dims=0)  # each problem starts where another one ended
        else:
            scale = float(name.split("x")[1])
            z0 = model.perturbed_start(zero_final, scale, rms, gen)
        runs.append(_run(model, task, x, y, iters, name, z0.to(zero_final.dtype), device, settings, {iters},
                         on_iter, precision))
        if on_stage is not None:
            on_stage("start", {"start": name, "accuracy": runs[-1].accuracy.tolist()})
    finals = [r.states[iters] for r in runs]
    dist = [_rel_distance(z, zero_final) for z in finals]
    pi = {
        "starts": [{"start": r.start, "accuracy": r.accuracy.tolist(), "final_accuracy": float(r.accuracy[-1]),
                    "distance_from_zero_start": _finite_mean(d)} for r, d in zip(runs, dist, strict=True)],
        "aa_score": alignment(finals),
        "noise_scale_unit": rms,
    }
    pi["largest_mean_distance"] = max((s["distance_from_zero_start"] or 0.0) for s in pi["starts"])
    if model.has_solver:
        tol = float(getattr(settings, "tol", 1e-4))
        all_conv = all(bool(r.converged[-1].all()) for r in runs)
        worst = max((float(np.nanmax(d)) for d in dist if np.isfinite(d).any()), default=math.nan)
        pi["same_fixed_point"] = bool(all_conv and worst < SAME_POINT_FACTOR * tol)
        pi["same_fixed_point_rule"] = (f"every start converged and every final state within {SAME_POINT_FACTOR:g} x "
                                       f"tol ({SAME_POINT_FACTOR * tol:.0e}) of the zero start's, relative")
        pi["largest_distance"] = worst
    if on_stage is not None:
        on_stage("path_independence", pi)

    # the fixed point: the depth run's end; the best iterate: the best accuracy at any finite iteration of it
    last_res = depth.residual[-1]
    settled = depth.converged[-1] | (np.nan_to_num(last_res, nan=0.0) < 1e-4)
    best_k = int(np.argmax(depth.accuracy)) + 1
    ever_right = depth.correct.any(0)
    end_right = depth.correct[-1]
    fp = {
        "iters": depth_iters, "fixed_point_accuracy": float(depth.accuracy[-1]),
        "best_iterate_accuracy": float(depth.accuracy[best_k - 1]), "best_iter": best_k,
        "settled_fraction": float(settled.mean()),
        "oracle_any_iterate_accuracy": float(ever_right.mean()),
        "best_iterate_beats_fixed_point": float((ever_right & ~end_right).mean()),
        "fixed_point_beats_every_earlier_iterate": float((end_right & ~depth.correct[:-1].any(0)).mean())
        if depth_iters > 1 else 0.0,
    }
    if on_stage is not None:
        on_stage("fixed_point_vs_iterate", fp)

    # halting, on the depth run
    rules = [("residual", t) for t in RESIDUAL_TOLS] + [("stable", m) for m in STABLE_FOR] + \
        [("confidence", c) for c in CONFIDENCES] + ([("solver", 1.0)] if model.has_solver else [])
    halting = {"rules": [halting_point(depth, r, v) for r, v in rules],
               "fixed_budget": {"accuracy": depth.accuracy.tolist(), "nfe": depth.nfe.tolist()}}
    if on_stage is not None:
        on_stage("halting", halting)

    # breadth: best of the first N starts by the verifier, against one run with the same NFE
    per_run_nfe = int(runs[0].nfe[-1])
    breadth = []
    B = len(x)
    for n in range(1, len(runs) + 1):
        scores = np.stack([r.score() for r in runs[:n]])  # (n, B)
        pick = np.argmin(np.where(np.isfinite(scores), scores, math.inf), axis=0)
        right = np.stack([r.correct[-1] for r in runs[:n]])[pick, np.arange(B)]
        oracle = np.stack([r.correct[-1] for r in runs[:n]]).any(0)
        nfe = n * per_run_nfe
        k = int(np.searchsorted(depth.nfe, nfe, side="left"))
        k = min(k, len(depth.nfe) - 1)
        breadth.append({"starts": n, "nfe": nfe, "breadth_accuracy": float(right.mean()),
                        "oracle_accuracy": float(oracle.mean()), "depth_iters": k + 1,
                        "depth_nfe": int(depth.nfe[k]), "depth_accuracy": float(depth.accuracy[k])})
    verifier = model.breadth_series or "final residual"
    scores = np.concatenate([r.score() for r in runs])
    rights = np.concatenate([r.correct[-1] for r in runs])
    out = {"path_independence": pi, "fixed_point_vs_iterate": fp, "halting": halting,
           "breadth": {"verifier": verifier, "points": breadth,
                       "verifier_auroc": auroc(-scores, rights), "verifier_n": int(rights.size),
                       "verifier_right": int(rights.sum())}}
    if on_stage is not None:
        on_stage("breadth", out["breadth"])
    return out
