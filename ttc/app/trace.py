"""A run's trace for the dashboard: the probe's records gathered into arrays, live or in one go.

`LiveRun` iterates the probe one iteration at a time and can hand out a `Trace` snapshot at any
moment (what the live charts draw); `compute_trace` runs to the end. A trace keeps per-iteration
curves, per-sample correctness and confidence, and the predictions of the first few problems at
every iteration (for the example inspector), within a fixed memory bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from models import ConfigError, get_family
from tasks import get_task, optional
from tasks.difficulty import draw
from tasks.difficulty import measure as difficulty_measures
from ttc.app.settings import RunSettings, precision_of, run_settings_of
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.evaluate import summarize
from ttc.engine.probe import probe
from ttc.engine.records import Columns

PREDS_BYTES = 16 * 1024 * 1024  # bound on the stored per-iteration predictions of one trace
SHOWN_MAX = 16  # problems whose predictions are kept for the inspector
POS_ERROR_ENTRIES = 8 * 1024 * 1024  # bound on iterations x cells of the batch's per-position error (float16)
MAPS_BYTES = 24 * 1024 * 1024  # bound on the stored per-iteration maps (memory read/write weights) of one trace
OVERTHINK_DROP = 0.05  # accuracy lost after the peak that counts as overthinking
LIVE_FRAME_SECONDS = 0.12  # a live run redraws about 8 times a second (a Stop takes effect at the next frame)


def generate_for(s: RunSettings) -> tuple[np.ndarray, np.ndarray]:
    """The run's problems: n of the size from the seed, at the settings' difficulty when one is set."""
    return draw(get_task(s.task), s.size, s.n, s.seed, s.difficulty)


def expected_iters(ck: Checkpoint, budget: int) -> int:
    """How many records a run yields (a fixed-depth family always runs its depth)."""
    return ck.model.budget(budget)


@dataclass
class Trace:
    settings: RunSettings
    family: str
    arch: str
    params: int
    memory_kind: str  # "cuda_allocated" or "cpu_tensor_bytes"
    expected: int  # iterations the run was asked for (records when it completes)
    k: np.ndarray  # (K,) int, 1-based iteration
    accuracy: np.ndarray  # (K,) exact-match fraction
    bit_accuracy: np.ndarray  # (K,) fraction of output cells right
    residual: np.ndarray  # (K,) mean relative residual over running samples, NaN when none runs
    nfe: np.ndarray  # (K,) int
    elapsed: np.ndarray  # (K,) seconds of compute since the start (time spent drawing a live run excluded)
    memory_bytes: np.ndarray  # (K,) int
    converged: np.ndarray  # (K,) int, samples converged so far
    diverged: np.ndarray  # (K,) int
    correct: np.ndarray  # (K, n) bool
    confidence: np.ndarray  # (K, n) float32, mean probability of the predicted class
    inputs: np.ndarray  # (m, ...) uint8, the first m problems
    targets: np.ndarray  # (m, ...) uint8
    preds: np.ndarray  # (K, m, *spatial) uint8 predictions of those problems
    stopped: bool = False  # ended by the user before the budget
    precision: str = "fp32"  # what the cores computed in (the settings' auto resolved for this checkpoint)
    fixed_depth: bool | None = None  # the family's depth is fixed (None: the registered family class says)
    series: dict[str, np.ndarray] = field(default_factory=dict)  # (K, n) float32, the family's extra series
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # (K, m_maps, ...) float16 maps of the first problems
    pos_error: np.ndarray | None = None  # (K, cells) float16: fraction of all n problems wrong at each output cell
    difficulty: dict[str, np.ndarray] | None = None  # (n,) int per measure of the task (its main one first)
    reach: int | None = None  # cells information moves per iteration in this model (None: no bound)
    cell_conf: np.ndarray | None = None  # (K, m, *spatial) float16 per-cell confidence (tasks that show it: sudoku)

    def __post_init__(self) -> None:
        if self.fixed_depth is None:
            try:
                self.fixed_depth = get_family(self.family).fixed_depth
            except ConfigError:
                self.fixed_depth = False

    @property
    def iters(self) -> int:
        return len(self.k)

    @property
    def complete(self) -> bool:
        return self.iters >= self.expected

    @property
    def shown(self) -> int:
        return len(self.inputs)

    def settled_at(self) -> np.ndarray:
        """(n,) the iteration from which each problem is right and stays right to the end (0: wrong at the end)."""
        if not self.iters:
            return np.zeros(self.settings.n, dtype=np.int64)
        c = self.correct
        # the last iteration at which the problem was wrong; it is settled from the next one
        wrong_at = np.where(~c, np.arange(1, self.iters + 1)[:, None], 0).max(axis=0)
        return np.where(c[-1], wrong_at + 1, 0)

    @property
    def maps_shown(self) -> int:
        """Problems (the first ones) whose per-iteration maps were kept."""
        return min((m.shape[1] for m in self.maps.values()), default=0)

    def summary(self) -> dict:
        """The metrics row: best and final accuracy, compute, convergence."""
        if not self.iters:
            return {}
        seconds = float(self.elapsed[-1])
        return {**summarize(self.accuracy, self.k).to_dict(), "nfe": int(self.nfe[-1]), "seconds": seconds,
                "iters_per_second": self.iters / seconds if seconds > 0 else math.inf,
                "converged": int(self.converged[-1]), "diverged": int(self.diverged[-1]), "iters": self.iters}

    def eval_json(self) -> dict:
        """The trace in the `python -m ttc eval --json` contract, plus the dashboard's extra curves."""
        s, m = self.settings, self.summary()
        return {
            "task": s.task, "family": self.family, "arch": self.arch, "params": self.params, "size": s.size,
            "n": s.n, "iters": s.budget, "device": s.device, "precision": self.precision,
            "accuracy": self.accuracy.tolist(),
            "final_accuracy": m.get("final_accuracy"), "best_accuracy": m.get("best_accuracy"),
            "best_iter": m.get("best_iter"),
            "residual": [None if math.isnan(r) else float(r) for r in self.residual],
            "nfe": m.get("nfe"), "seconds": m.get("seconds"),
            "bit_accuracy": self.bit_accuracy.tolist(), "elapsed": self.elapsed.tolist(),
            "memory_bytes": self.memory_bytes.tolist(), "memory_kind": self.memory_kind,
            "converged": self.converged.tolist(), "diverged": self.diverged.tolist(),
            "stopped": self.stopped,
            "difficulty_name": next(iter(self.difficulty), None) if self.difficulty else None,
            "difficulty": next(iter(self.difficulty.values())).tolist() if self.difficulty else None,
            "solved_at": [int(v) if v > 0 else None for v in self.settled_at()],
            "reach_per_iteration": self.reach,
            **{name: series_mean(v) for name, v in self.series.items()},
        }


def series_mean(v: np.ndarray) -> list[float | None]:
    """(K, n) per-sample series -> per-iteration mean over its finite samples (None where none is finite)."""
    ok = np.isfinite(v)
    cnt = ok.sum(axis=1)
    tot = np.where(ok, v, 0.0).sum(axis=1)
    return [float(t / c) if c else None for t, c in zip(tot, cnt, strict=True)]


class LiveRun:
    """One run, advanced by iterating: each step consumes one probe record; `trace()` snapshots it."""

    def __init__(self, ck: Checkpoint, s: RunSettings):
        task = get_task(s.task)
        self.ck, self.settings = ck, s
        self.inputs, self.targets = generate_for(s)
        self.difficulty = difficulty_measures(task, self.inputs, self.targets)
        self.expected = expected_iters(ck, s.budget)
        cells = int(np.prod(task.target_shape(s.size)))
        self.shown = int(max(1, min(s.n, SHOWN_MAX, PREDS_BYTES // max(1, cells * self.expected))))
        # the family's maps (a memory model's position x slot weights) are copied for the shown problems; how many
        # of them a trace keeps is decided from the first record's sizes (maps_kept), within MAPS_BYTES
        self.maps_kept: int | None = None
        self.precision = precision_of(ck, s)[0]  # the page shows why, when the asked precision cannot run
        shown, keep_error = self.shown, cells * self.expected <= POS_ERROR_ENTRIES
        self._records = probe(ck.model, task, self.inputs, self.targets, s.budget, device=s.device,
                              settings=run_settings_of(ck, s), maps_for=self.shown if ck.model.extra_maps else 0,
                              cell_error=keep_error, precision=self.precision,
                              conf_for=self.shown if optional(task, "shows_confidence") else 0)
        self._cols = Columns({
            **dict.fromkeys(("k", "accuracy", "bit_accuracy", "residual", "nfe", "elapsed", "memory_bytes", "correct")),
            "converged": lambda r: int(r.converged.sum()), "diverged": lambda r: int(r.diverged.sum()),
            "confidence": lambda r: r.confidence.astype(np.float32),
            # a copy: a view of the shown problems would keep every problem's predictions alive (and, as records
            # share arrays, those of the iterations made with it), past the bound `shown` was chosen for
            "preds": lambda r: r.preds[:shown].numpy().copy(),
            "cell_conf": lambda r: None if r.cell_conf is None else np.array(r.cell_conf[:shown]),
            # the front of the computation: where the batch is still wrong
            "pos_error": lambda r: r.cell_error.astype(np.float16) if keep_error else None}, series=True)
        self._maps: dict[str, list] = {}
        self.memory_kind = "cpu_tensor_bytes"
        self.stopped = False

    @property
    def done(self) -> int:
        return self._cols.count

    def __iter__(self) -> Iterator[LiveRun]:
        for r in self._records:  # r.elapsed leaves out the time this consumer held the stream (drawing)
            self._cols.add(r)
            if r.maps:
                if self.maps_kept is None:  # bytes one problem's maps take over the whole run
                    per_problem = sum(v[0].nbytes for v in r.maps.values()) * self.expected
                    self.maps_kept = int(min(self.shown, MAPS_BYTES // max(1, per_problem)))
                for name, v in r.maps.items():
                    self._maps.setdefault(name, []).append(v[: self.maps_kept])
            self.memory_kind = r.memory_kind
            yield self

    def trace(self, maps: bool = True) -> Trace:
        """A snapshot; maps=False leaves out the per-iteration maps (a live frame draws none of them)."""
        c, n, m = self._cols, self.settings.n, self.shown
        spatial = get_task(self.settings.task).target_shape(self.settings.size)
        return Trace(
            settings=self.settings, family=self.ck.family, arch=self.ck.arch, params=self.ck.model.num_params(),
            memory_kind=self.memory_kind, expected=self.expected,
            k=c.array("k", np.int64), accuracy=c.array("accuracy", np.float64),
            bit_accuracy=c.array("bit_accuracy", np.float64), residual=c.array("residual", np.float64),
            nfe=c.array("nfe", np.int64), elapsed=c.array("elapsed", np.float64),
            memory_bytes=c.array("memory_bytes", np.int64), converged=c.array("converged", np.int64),
            diverged=c.array("diverged", np.int64), correct=c.stack("correct", (0, n), bool),
            confidence=c.stack("confidence", (0, n), np.float32),
            inputs=self.inputs[:m], targets=self.targets[:m], preds=c.stack("preds", (0, m, *spatial), np.uint8),
            stopped=self.stopped, fixed_depth=self.ck.model.fixed_depth, precision=self.precision,
            series={k: np.stack(v).astype(np.float32) for k, v in c.series.items()},
            maps={k: np.stack(v) for k, v in self._maps.items()} if maps else {},
            pos_error=c.stack("pos_error") if maps and c.cols["pos_error"] else None,
            difficulty=self.difficulty, reach=self.ck.model.reach_per_iteration,
            cell_conf=c.stack("cell_conf") if c.cols["cell_conf"] else None,
        )


def compute_trace(ck: Checkpoint, s: RunSettings) -> Trace:
    """Run to the end of the budget and return the whole trace."""
    run = LiveRun(ck, s)
    for _ in run:
        pass
    return run.trace()


def done_text(t: Trace) -> str:
    """The progress line of a finished run; a run whose samples all stopped (a solver's) says where, and how
    many function evaluations it spent, instead of claiming the whole budget."""
    seconds = t.summary()["seconds"]
    settled = int((t.nfe < t.nfe[-1]).sum()) + 1  # the first iteration after which no evaluation was spent
    if settled < t.iters:
        return (f"Done: every sample stopped at iteration {settled} of {t.iters} ({int(t.nfe[-1]):,} function "
                f"evaluations; the rest of the budget holds the answer) in {seconds:.2f} s.")
    return f"Done: {t.iters} iterations in {seconds:.2f} s."


def peak_note(t: Trace, name: str) -> str:
    """Where the run peaks and whether more iterations hurt it (overthinking), in one sentence; a curve that still
    climbs in the last fifth of its budget says so and suggests a budget."""
    if not t.iters:
        return f"{name}: no iterations yet."
    m = t.summary()
    best, k_best, final = m["best_accuracy"], m["best_iter"], m["final_accuracy"]
    head = f"{name} ({t.family}) peaks at {best:.0%} at iteration {k_best} of {t.iters}"
    if t.fixed_depth:
        if best <= 0:
            return (f"{name} ({t.family}) solves none of these problems with its fixed depth of {t.expected} layers; "
                    "a larger budget buys nothing.")
        return f"{head}; its depth is fixed at {t.expected} layers, so a larger budget buys nothing."
    if best <= 0:
        return f"{name} ({t.family}) solves none of these problems within {t.iters} iterations."
    diverged = int(t.diverged[-1]) if len(t.diverged) else 0
    if best - final > OVERTHINK_DROP and diverged:
        return (f"{head}, then falls to {final:.0%} by iteration {t.iters} as {diverged} of {t.settings.n} samples "
                "diverge (their state blew up): the iteration diverges, which is not overthinking.")
    if best - final > OVERTHINK_DROP:
        return f"{head}, then falls to {final:.0%} by iteration {t.iters}: it overthinks."
    late = t.accuracy[int(0.8 * t.iters):]  # the last fifth of the budget
    earlier = t.accuracy[: max(1, int(0.8 * t.iters))]
    if t.iters >= 2 and late.max() > earlier.max() and t.accuracy[-1] >= earlier.max():
        return (f"{head}: still climbing in the last fifth of the budget ({earlier.max():.0%} before it, "
                f"{late.max():.0%} in it); try {2 * t.iters} iterations.")
    return f"{head} and holds {final:.0%} to iteration {t.iters}: no overthinking."
