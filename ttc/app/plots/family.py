"""What a family reports beyond the curves: its extra series, and the inspector's views of its maps."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models import ConfigError, get_family
from ttc.app.plots.style import _base, add_band, family_color, lighter, series_label
from ttc.app.trace import Trace


def series_figure(name: str, t: Trace, series: str) -> go.Figure:
    """One of the family's extra per-iteration series (a memory model's slot norms, an EBM's energy): the mean
    over the finite samples with the band from the 10th to the 90th percentile."""
    v = t.series[series].astype(np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    label = series_label(t.family, series)
    fig = _base(f"{label} per iteration", "iteration", "", height=280)  # the title says it: a long y title runs into it
    k = t.k.tolist()
    color = family_color(t.family)
    with np.errstate(all="ignore"):
        rows_ok = np.isfinite(v).any(axis=1)
        lo = np.full(len(v), np.nan)
        hi = np.full(len(v), np.nan)
        mean = np.full(len(v), np.nan)
        if rows_ok.any():
            lo[rows_ok] = np.nanpercentile(v[rows_ok], 10, axis=1)
            hi[rows_ok] = np.nanpercentile(v[rows_ok], 90, axis=1)
            mean[rows_ok] = np.nanmean(v[rows_ok], axis=1)
    add_band(fig, k, lo, hi, color, "10th to 90th percentile of the samples", lighter(color, 0.7))
    fig.add_trace(go.Scatter(x=k, y=mean.tolist(), mode="lines", line={"color": color}, name=f"{name}: mean"))
    return fig


def memory_access_figure(t: Trace, problem: int, k: int, maps: tuple[str, str]) -> go.Figure:
    """Two maps of weights over slots at iteration k for one problem (a memory model's read and write weights):
    positions (x) against slots (y), each position's weights over the slots summing to 1."""
    read = t.maps[maps[0]][k - 1, problem].astype(np.float32).T  # (S, P)
    write = t.maps[maps[1]][k - 1, problem].astype(np.float32).T
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=(f"{maps[0].capitalize()} weights, iteration {k}",
                                        f"{maps[1].capitalize()} weights, iteration {k}"))
    slots = [f"slot {s}" for s in range(read.shape[0])]
    positions = list(range(read.shape[1]))
    for col, w in ((1, read), (2, write)):
        fig.add_trace(go.Heatmap(z=w.tolist(), x=positions, y=slots, zmin=0, zmax=1, colorscale="Blues",
                                 colorbar={"title": {"text": "weight"}, "x": 1.02}, showscale=col == 2,
                                 hovertemplate="position %{x}, %{y}: %{z:.3f}<extra></extra>"), 1, col)
    fig.update_xaxes(title_text="position in the string")
    fig.update_layout(title={"text": f"Memory access, problem {problem}", "x": 0.02}, height=300,
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 70, "b": 45})
    return fig


def answer_figure(t: Trace, problem: int, k: int, maps: tuple[str]) -> go.Figure:
    """An energy-based model's relaxed answer y for one problem: on strings, output cell (x) against iteration (y)
    with iteration k marked, so the values are seen forming; on grids, y at iteration k. The first class channel
    is shown for two-class tasks (y = probability of a 1), the argmax's probability otherwise."""
    a = t.maps[maps[0]][:, problem].astype(np.float32)  # (K, Y, *spatial)
    a = a[:, 0] if a.shape[1] == 1 else a.max(axis=1)
    scale = [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]]
    bar = {"title": {"text": "y"}}
    if a.ndim == 2:  # strings: (K, L)
        fig = _base(f"Relaxed answer y of problem {problem}, iteration by iteration", "output cell", "iteration",
                    height=max(260, min(600, 40 + 4 * a.shape[0])))
        fig.add_trace(go.Heatmap(z=a.tolist(), x=list(range(a.shape[1])), y=t.k.tolist(), zmin=0, zmax=1,
                                 colorscale=scale, colorbar=bar,
                                 hovertemplate="cell %{x}, iteration %{y}: y = %{z:.3f}<extra></extra>"))
        fig.add_hline(y=k, line_dash="dot", line_color="#d62728", annotation_text=f"iteration {k}",
                      annotation_position="top right")
        return fig
    side = a.shape[-1]
    fig = _base(f"Relaxed answer y of problem {problem} at iteration {k}", "column", "row",
                height=max(320, min(900, 14 * side + 80)))
    fig.add_trace(go.Heatmap(z=a[k - 1].tolist(), zmin=0, zmax=1, colorscale=scale, colorbar=bar,
                             hovertemplate="row %{y}, column %{x}: y = %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return fig


# the inspector's figure kinds a family's map_views name: kind -> figure(trace, problem, iteration, maps)
MAP_FIGURES = {"answer_frames": answer_figure, "slot_weights": memory_access_figure}


def map_views(t: Trace) -> list[tuple[object, tuple[str, ...], str, str]]:
    """The family's views of the maps this trace kept: (figure function, its maps, what it shows, a file stem)."""
    try:
        declared = get_family(t.family).map_views
    except ConfigError:
        return []
    return [(MAP_FIGURES[kind], tuple(names), what, "-".join(names)) for kind, names, what in declared
            if kind in MAP_FIGURES and all(n in t.maps for n in names)]

