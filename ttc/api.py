"""The Python API for notebooks: the CLI's runs as objects.

    import ttc
    ck = ttc.load("prefix_sums-recursive")                    # a zoo name, or a path to a .safetensors file
    run = ttc.run(ck, size=512, iters=300, n=200, seed=0)     # the numbers of `python -m ttc eval --json`
    run.accuracy, run.residual, run.best_accuracy, run.best_iter, run.solved_at, run.difficulty
    run.to_pandas()                                           # one row per iteration
    run.figure()                                              # accuracy and residual against iterations (plotly)
    an = ttc.analyze(ck, size=128, iters=100, starts=3, n=50)  # `python -m ttc analyze --json`, as a dict
    mem = ttc.memory(ttc.load("prefix_sums-deq"), size=32, iters=(10, 100))   # `python -m ttc memory --json` rows

Importing ttc imports neither Streamlit nor plotly (plotly only when a figure is drawn). Every draw of problems
takes its seed; `precision` is auto | fp32 | bf16 as on the command line.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import UNROLLED
from models import precision as prec
from tasks import get_task, tensors
from tasks.difficulty import draw
from tasks.difficulty import main_name as difficulty_main
from tasks.difficulty import measure as difficulty_measures
from ttc.engine.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint
from ttc.engine.probe import resolve_device
from ttc.engine.runtime import project_root


def _folder() -> Path:
    import os

    return Path(os.environ.get("TTC_CHECKPOINTS") or project_root() / "checkpoints")


def load(name_or_path: str | Path | Checkpoint) -> Checkpoint:
    """A checkpoint by zoo name ("prefix_sums-recursive", looked up in $TTC_CHECKPOINTS or the shipped
    checkpoints/) or by path; validated as every checkpoint is (a malformed file raises CheckpointError)."""
    if isinstance(name_or_path, Checkpoint):
        return name_or_path
    p = Path(name_or_path)
    if p.suffix != ".safetensors" and not p.exists():
        p = _folder() / f"{name_or_path}.safetensors"
    if not p.exists():
        known = sorted(q.stem for q in list_checkpoints(_folder()))
        raise CheckpointError(f"no checkpoint {str(name_or_path)[:80]!r}: not a file, and not a zoo name (known: "
                              f"{', '.join(known)})")
    return load_checkpoint(p)


def _precision(ck: Checkpoint, precision: str, device) -> str:
    return prec.resolve(precision, resolve_device(device), ck.card.get("precision_auto"))


def _problems(ck: Checkpoint, size: int | None, n: int, seed: int, difficulty: int | None,
              data: str | Path | None):
    from tasks import load_npz

    task = get_task(ck.task)
    if data is not None:
        name, size, x, y = load_npz(data)
        if name != ck.task:
            raise ValueError(f"{data} holds {name} problems; {ck.name} is a model of task {ck.task}")
        return task, size, x, y
    if size is None:
        size = max(ck.train_sizes, default=task.train_size)
    size = task.sizes.check(task.name, size)
    x, y = draw(task, size, n, seed, difficulty)
    return task, size, x, y


@dataclass
class Run:
    """One evaluation: per-iteration curves (index i is iteration i + 1) and per-problem results."""

    checkpoint: str
    task: str
    family: str
    size: int
    n: int
    iters: int
    seed: int
    precision: str
    accuracy: np.ndarray  # (K,) exact-match fraction after each iteration
    residual: np.ndarray  # (K,) mean relative residual over running samples (NaN when none runs)
    nfe: int
    seconds: float
    solved_at: list[int | None]  # per problem: the iteration from which it stays right (None: wrong at the end)
    difficulty_name: str | None = None
    difficulty: np.ndarray | None = None  # (n,) the task's main measure per problem
    reach_per_iteration: int | None = None
    series: dict[str, np.ndarray] = field(default_factory=dict)  # the family's extra series, per iteration

    @property
    def best_accuracy(self) -> float:
        return float(self.accuracy.max())

    @property
    def best_iter(self) -> int:
        return int(np.argmax(self.accuracy)) + 1

    @property
    def final_accuracy(self) -> float:
        return float(self.accuracy[-1])

    def to_pandas(self):
        """A DataFrame, one row per iteration: iteration, accuracy, residual and the family's series."""
        import pandas as pd

        return pd.DataFrame({"iteration": np.arange(1, len(self.accuracy) + 1), "accuracy": self.accuracy,
                             "residual": self.residual, **{k: np.asarray(v, dtype=float)
                                                           for k, v in self.series.items()}})

    def problems(self):
        """A DataFrame, one row per problem: its difficulty (when the task measures one) and solved_at."""
        import pandas as pd

        out = {"problem": np.arange(self.n), "solved_at": pd.array(self.solved_at, dtype="Int64")}
        if self.difficulty is not None:
            out[self.difficulty_name] = self.difficulty
        return pd.DataFrame(out)

    def figure(self):
        """Accuracy and residual against iterations, in the family's colour (a plotly Figure)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from models import get_family

        color = get_family(self.family).color
        k = np.arange(1, len(self.accuracy) + 1)
        fig = make_subplots(rows=1, cols=2, subplot_titles=("exact-match accuracy", "relative residual"))
        fig.add_trace(go.Scatter(x=k, y=self.accuracy, name=f"{self.checkpoint} accuracy", line={"color": color}),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=k, y=self.residual, name=f"{self.checkpoint} residual",
                                 line={"color": color, "dash": "dot"}), row=1, col=2)
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
        fig.update_yaxes(type="log", row=1, col=2)
        fig.update_xaxes(title_text="iteration")
        fig.update_layout(title=f"{self.checkpoint}: {self.task} size {self.size}, n={self.n}, {self.precision}",
                          template="plotly_white", height=360)
        return fig

    def to_dict(self) -> dict:
        """The `python -m ttc eval --json` object."""
        return {"task": self.task, "family": self.family, "size": self.size, "n": self.n, "iters": self.iters,
                "precision": self.precision, "accuracy": self.accuracy.tolist(),
                "final_accuracy": self.final_accuracy, "best_accuracy": self.best_accuracy,
                "best_iter": self.best_iter,
                "residual": [None if math.isnan(v) else float(v) for v in self.residual], "nfe": self.nfe,
                "seconds": self.seconds, "solved_at": self.solved_at, "difficulty_name": self.difficulty_name,
                "difficulty": None if self.difficulty is None else self.difficulty.tolist(),
                "reach_per_iteration": self.reach_per_iteration}


def run(checkpoint: str | Path | Checkpoint, size: int | None = None, iters: int | None = None, n: int = 200,
        seed: int = 0, difficulty: int | None = None, precision: str = "auto", device: str = "cpu",
        data: str | Path | None = None, batch: int = 256, **options) -> Run:
    """Evaluate a checkpoint on n fresh problems of `size` (default: its training size) drawn from `seed` (at a
    `difficulty` when given), or on a `data` .npz, for `iters` iterations (default: twice its training ones).
    options: the family's run settings (e.g. method="fixed_point", tol=1e-5 for a DEQ)."""
    from ttc.engine.evaluate import evaluate

    ck = load(checkpoint)
    task, size, x, y = _problems(ck, size, n, seed, difficulty, data)
    iters = iters or 2 * ck.config.layers
    settings = ck.model.run_settings(ck.model.settings_from_card(ck.card), **options)
    p = _precision(ck, precision, device)
    t0 = time.perf_counter()
    c = evaluate(ck.model, task, x, y, iters, device=device, batch=batch, settings=settings, precision=p)
    measures = difficulty_measures(task, x, y)
    main = difficulty_main(task)
    return Run(checkpoint=ck.name, task=ck.task, family=ck.family, size=size, n=len(x), iters=iters, seed=seed,
               precision=p, accuracy=np.asarray(c.accuracy, dtype=float),
               residual=np.array([np.nan if v is None else v for v in c.residual], dtype=float),
               nfe=c.nfe[-1] if c.nfe else 0, seconds=time.perf_counter() - t0, solved_at=list(c.solved_at or []),
               difficulty_name=main, difficulty=measures[main] if measures else None,
               reach_per_iteration=ck.model.reach_per_iteration,
               series={k: np.array([np.nan if v is None else v for v in vs]) for k, vs in (c.series or {}).items()})


def analyze(checkpoint: str | Path | Checkpoint, size: int | None = None, iters: int | None = None, starts: int = 5,
            n: int = 200, seed: int = 0, difficulty: int | None = None, precision: str = "auto",
            device: str = "cpu", **options) -> dict:
    """`python -m ttc analyze --json` as a dict: path_independence, fixed_point_vs_iterate, halting, breadth."""
    from ttc.engine.analyze import analyze as _analyze

    ck = load(checkpoint)
    task, size, x, y = _problems(ck, size, n, seed, difficulty, None)
    iters = iters or 2 * ck.config.layers
    settings = ck.model.run_settings(ck.model.settings_from_card(ck.card), **options)
    p = _precision(ck, precision, device)
    out = _analyze(ck.model, task, x, y, iters, starts=starts, seed=seed, device=device, settings=settings,
                   precision=p)
    return {"checkpoint": ck.name, "task": ck.task, "family": ck.family, "size": size, "n": len(x), "iters": iters,
            "starts": starts, "seed": seed, "difficulty": difficulty, "precision": p, **out}


def memory(checkpoint: str | Path | Checkpoint, size: int | None = None, iters=(10, 100), modes=None,
           batch: int = 8, seed: int = 0, precision: str = "auto", device: str = "cpu"):
    """`python -m ttc memory --json` rows as a DataFrame: mode, iters, saved_bytes, peak_bytes, seconds, nfe."""
    import pandas as pd

    from ttc.engine.memory import measure, memory_budget, unrolled_bytes_estimate

    ck = load(checkpoint)
    own = ck.model.memory_modes
    if not own:
        raise ValueError(f"{ck.name} is a model of the {ck.family} family; memory modes apply to families that "
                         "declare them (DEQ, EBM)")
    modes = list(modes or own)
    bad = [m for m in modes if m not in own]
    if bad:
        raise ValueError(f"modes {bad} do not apply to {ck.family}; its modes: {', '.join(own)}")
    iters = [int(k) for k in iters]
    task = get_task(ck.task)
    size = task.sizes.check(task.name, size or max(ck.train_sizes, default=task.train_size))
    dev = resolve_device(device)
    xs, ys = task.generate(size, batch, seed)
    x, y = tensors(task, xs, ys, dev)
    model = ck.model.to(dev)
    p = _precision(ck, precision, device)
    if UNROLLED in modes:  # as the CLI does: a step that would not fit in memory is refused before it starts
        need, budget = unrolled_bytes_estimate(model, x, y, max(iters)), memory_budget(dev)
        if need > budget:
            raise ValueError(f"unrolled at {max(iters)} iterations would save about {need / 2**30:.1f} GiB, over the "
                             f"{budget / 2**30:.1f} GiB this machine can spare; lower batch, size or iters")
    with prec.use(p):
        rows = [{key: r[key] for key in ("mode", "iters", "saved_bytes", "peak_bytes", "seconds", "nfe")}
                | {"precision": p} for r in measure(model, x, y, iters, modes)]
    return pd.DataFrame(rows)
