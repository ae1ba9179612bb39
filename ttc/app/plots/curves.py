"""Curves of runs: accuracy, residual and memory per iteration (and the live three-panel figure), accuracy
against size and difficulty, training memory per mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ttc.app.plots.style import (
    LOG_AXIS,
    LOG_SMALL,
    MEMORY_LABELS,
    Labelled,
    _base,
    _rgba,
    _style,
    add_band,
    add_wilson_band,
    count_dtick,
    family_color,
    fit_legend,
    mode_style,
    per_cell,
)
from ttc.app.trace import Trace
from ttc.engine.evaluate import wilson


def residual_figure(traces: Labelled) -> go.Figure:
    """Relative residual ||z_k - z_{k-1}|| / ||z_k|| (the solver's, for DEQs) per iteration, log scale.
    Samples that diverged (non-finite state or residual blown up) leave the mean; when a run has any, their
    count per iteration is drawn on a second axis. NaN and inf residuals become gaps, never break the chart."""
    fig = _base("Residual per iteration", "iteration", "relative residual (log)")
    style = _style(traces)
    for name, t in traces:
        y = np.where(np.isfinite(t.residual) & (t.residual > 0), t.residual, np.nan)
        fig.add_trace(go.Scatter(x=t.k.tolist(), y=y.tolist(), mode="lines", name=name, line=style[name]))
    diverging = [(name, t) for name, t in traces if t.iters and t.diverged[-1] > 0]
    for name, t in diverging:
        fig.add_trace(go.Scatter(x=t.k.tolist(), y=t.diverged.tolist(), mode="lines", yaxis="y2", line_shape="hv",
                                 name=f"{name}: diverged samples", line={**style[name], "dash": "dot", "width": 1}))
    if diverging:
        most = max(int(t.diverged.max()) for _, t in diverging)
        fig.update_layout(yaxis2={"title": {"text": "diverged samples"}, "overlaying": "y", "side": "right",
                                  "rangemode": "tozero", "showgrid": False, "tickformat": "d",
                                  "dtick": count_dtick(most)})
    fig.update_layout(yaxis=LOG_SMALL)
    return fig


def accuracy_figure(traces: Labelled, x: str = "iteration", bits: bool = False) -> go.Figure:
    """Exact-match accuracy per iteration (x="iteration") or against wall time (x="seconds")."""
    if x not in ("iteration", "seconds"):
        raise ValueError(f"x must be 'iteration' or 'seconds', got {x!r}")
    title = "Accuracy vs iterations" if x == "iteration" else "Accuracy vs wall time"
    fig = _base(title, "iteration" if x == "iteration" else "wall time (s)", "exact-match accuracy")
    style = _style(traces)
    for name, t in traces:
        xs = (t.k if x == "iteration" else t.elapsed).tolist()
        fig.add_trace(go.Scatter(x=xs, y=t.accuracy.tolist(), mode="lines", name=name, line=style[name],
                                 legendgroup=name))
        if bits:
            fig.add_trace(go.Scatter(x=xs, y=t.bit_accuracy.tolist(), mode="lines",
                                     name=f"{name} ({per_cell(t)})",
                                     line={**style[name], "dash": "dot", "width": 1}))
    for name, t in traces:  # bands last, so trace i < len(traces) stays curve i
        add_wilson_band(fig, (t.k if x == "iteration" else t.elapsed).tolist(), t.accuracy, t.settings.n,
                        style[name]["color"], name)
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def memory_figure(traces: Labelled) -> go.Figure:
    """Memory per iteration; the axis says which reading it is (CUDA allocator or CPU tensor bytes)."""
    kinds = {t.memory_kind for _, t in traces} or {"cpu_tensor_bytes"}
    label = " / ".join(MEMORY_LABELS.get(k, k) for k in sorted(kinds))
    fig = _base("Memory per iteration", "iteration", "MiB", subtitle=label)
    style = _style(traces)
    for name, t in traces:
        fig.add_trace(go.Scatter(x=t.k.tolist(), y=(t.memory_bytes / 2**20).tolist(), mode="lines", name=name,
                                 line=style[name]))
    fig.update_yaxes(rangemode="tozero")
    return fig


class LiveFigure:
    """Accuracy (with its 95% band), residual and memory of a run in progress as one figure of three panels: a live
    frame redraws one chart instead of three, which keeps the browser's work per frame small. The figure is built
    once per run and each frame replaces its data in place: building and validating a plotly figure of subplots
    took about 80 ms of the server's time per frame on the 2-core machine, more than the run's own iterations
    (a 600-iteration run spent 67 of its 76 s drawing); replacing the data takes a few ms."""

    CURVE, BITS, RESIDUAL, UPPER, LOWER, MEMORY = range(6)  # the traces, in order

    def __init__(self, name: str, t: Trace):
        color = family_color(t.family)
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                            subplot_titles=("Accuracy vs iterations", "Residual per iteration (log)", "MiB"))
        fig.add_trace(go.Scatter(mode="lines", name=name, line={"color": color}), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", name=f"{name} ({per_cell(t)})",
                                 line={"color": color, "dash": "dot", "width": 1}), 1, 1)
        fig.add_trace(go.Scatter(mode="lines", showlegend=False, line={"color": color}), 1, 2)
        n = t.settings.n
        add_band(fig, [], np.zeros(0), np.zeros(0), color, f"{name}: 95% interval (n={n})", _rgba(color, 0.15),
                 upper=f"{name}: 95% interval, upper", group=name, row=1, col=1)
        fig.add_trace(go.Scatter(mode="lines", showlegend=False, line={"color": color}), 1, 3)
        # no template: copying one costs more than the rest of the frame, and the app draws in its own theme
        fig.update_layout(height=340, template=None, margin={"l": 50, "r": 20, "t": 70, "b": 40}, uirevision="live")
        fig.update_xaxes(range=[1, max(t.expected, 2)], title_text="iteration")
        fig.update_yaxes(range=[-0.02, 1.02], row=1, col=1)
        fig.update_yaxes(**LOG_SMALL, row=1, col=2)
        fit_legend(fig, per_row=3)
        fig.update_yaxes(rangemode="tozero", row=1, col=3)
        self.figure = fig
        self.update(t)

    def update(self, t: Trace) -> go.Figure:
        """The figure with t's data (t: a later snapshot of the same run); returns it."""
        fig, k = self.figure, t.k.tolist()
        lo, hi = wilson(np.asarray(t.accuracy, dtype=np.float64), t.settings.n) if t.iters else (np.zeros(0),) * 2
        ys = {self.CURVE: t.accuracy, self.BITS: t.bit_accuracy, self.RESIDUAL: np.where(t.residual > 0, t.residual,
              np.nan), self.UPPER: hi, self.LOWER: lo, self.MEMORY: t.memory_bytes / 2**20}
        for i, y in ys.items():
            fig.data[i].x, fig.data[i].y = k, np.asarray(y, dtype=np.float64).tolist()
        fig.layout.title = {"text": f"Running: iteration {t.iters} of {t.expected}", "x": 0.01}
        fig.layout.annotations[2].text = f"MiB: {MEMORY_LABELS.get(t.memory_kind, t.memory_kind)}"
        return fig


def live_figure(name: str, t: Trace) -> go.Figure:
    """The live figure of a run at snapshot t (a live run keeps one LiveFigure and updates it)."""
    return LiveFigure(name, t).figure


def heatmap_figure(name: str, sizes: Sequence[int], rows: Sequence[np.ndarray | None], budget: int) -> go.Figure:
    """Extrapolation map: accuracy after k iterations (columns) at each problem size (rows). Rows not yet
    computed are blank, so the map fills in as the sizes finish."""
    z = np.full((len(sizes), budget), np.nan)
    for i, r in enumerate(rows):
        if r is not None and len(r):
            z[i, : len(r)] = r[:budget]
            z[i, len(r):] = r[-1]  # explicit models stop at their depth; their answer stands
    fig = _base(f"Extrapolation: {name}", "iterations", "problem size", height=120 + 40 * max(3, len(sizes)))
    fig.add_trace(go.Heatmap(z=z.tolist(), x=list(range(1, budget + 1)), y=[str(s) for s in sizes], zmin=0, zmax=1,
                             colorscale="Viridis", colorbar={"title": {"text": "accuracy"}},
                             hovertemplate="size %{y}, %{x} iterations: %{z:.2f}<extra></extra>"))
    fig.update_yaxes(type="category")
    return fig


def memory_modes_figure(rows: Sequence[dict], key: str = "saved_bytes") -> go.Figure:
    """Training memory vs iteration count per backward mode (rows: the memory contract's objects)."""
    label = {"saved_bytes": "bytes saved for backward", "peak_bytes": "CUDA peak above baseline"}.get(key, key)
    fig = _base("Training memory", "iterations (log)", "MiB (log)", subtitle=label)
    for mode in dict.fromkeys(r["mode"] for r in rows):
        pts = sorted((r["iters"], r[key]) for r in rows if r["mode"] == mode and r.get(key) is not None)
        color, dash, symbol = mode_style(mode)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[max(p[1], 1) / 2**20 for p in pts], mode="lines+markers",
                                 name=mode, line={"color": color, "dash": dash}, marker={"symbol": symbol, "size": 9}))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_AXIS)
    return fig


def accuracy_by_difficulty_figure(rows: Sequence[tuple[str, str, np.ndarray, np.ndarray]], budget: int,
                                  measure: str) -> go.Figure:
    """Exact-match accuracy at the budget against difficulty, one curve per checkpoint with Wilson bands; rows:
    (name, family, difficulty (n,), right at the budget (n,) bool). Problems are pooled by distinct difficulty
    into at most 12 bins of equal count."""
    fig = _base(f"Accuracy at iteration {budget} against difficulty", f"difficulty ({measure})", "exact match",
                height=340)
    for name, family, d, right in rows:
        order = np.argsort(d, kind="stable")
        bins = [b for b in np.array_split(order, min(12, max(1, len(np.unique(d))))) if b.size]
        xs = [float(np.mean(d[b])) for b in bins]
        acc = np.array([float(right[b].mean()) for b in bins])
        color = family_color(family)
        n_min = min(b.size for b in bins)
        add_wilson_band(fig, xs, acc, n_min, color, name)
        fig.add_trace(go.Scatter(x=xs, y=acc.tolist(), mode="lines+markers", name=name, line={"color": color}))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig

