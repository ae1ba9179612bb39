"""The analysis figures: starts, distances, halting, breadth, the front of the computation, settling against
difficulty."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ttc.app.plots.style import _DASHES, LOG_AXIS, _base, family_color, per_cell
from ttc.app.trace import Trace


def starts_figure(name: str, starts: Sequence[dict]) -> go.Figure:
    """Path independence: accuracy per iteration from each initial state (one line per start)."""
    fig = _base(f"{name}: accuracy from each initial state", "iteration", "exact-match accuracy")
    for i, s in enumerate(starts):
        acc = s["accuracy"]
        fig.add_trace(go.Scatter(x=list(range(1, len(acc) + 1)), y=acc, mode="lines", name=s["start"],
                                 line={"dash": _DASHES[i % len(_DASHES)]}))
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def distances_figure(pi: dict) -> go.Figure:
    """Path independence: each start's final-state distance from the zero start's (relative), and the AA score."""
    starts = pi["starts"]
    fig = _base(f"Final state vs the zero start's (AA score {pi['aa_score']:.4f})", "initial state",
                "relative distance ||z - z_zeros|| / ||z_zeros||", height=320)
    vals = [s["distance_from_zero_start"] for s in starts]
    fig.add_trace(go.Bar(x=[s["start"] for s in starts], y=[v if v is not None else 0.0 for v in vals],
                         text=[f"{v:.2g}" if v is not None else "n/a" for v in vals], textposition="outside",
                         marker_color="#1f77b4", showlegend=False))
    fig.update_yaxes(rangemode="tozero")
    return fig


def halting_figure(name: str, halting: dict) -> go.Figure:
    """Halting: accuracy against mean NFE spent for each per-sample stopping rule, beside the fixed-budget curve
    (every sample runs the same number of iterations)."""
    fig = _base(f"{name}: halting rules against a fixed budget", "mean function evaluations per problem",
                "exact-match accuracy")
    fb = halting["fixed_budget"]
    fig.add_trace(go.Scatter(x=fb["nfe"], y=fb["accuracy"], mode="lines", name="fixed budget",
                             line={"color": "#7f7f7f"}))
    symbols = {"residual": "circle", "stable": "square", "confidence": "diamond", "solver": "star"}
    names = {"residual": "residual below tol", "stable": "prediction unchanged for m",
             "confidence": "confidence above c", "solver": "solver's own stop"}
    for rule in sorted({r["rule"] for r in halting["rules"]}):
        pts = [r for r in halting["rules"] if r["rule"] == rule]
        fig.add_trace(go.Scatter(x=[p["mean_nfe"] for p in pts], y=[p["accuracy"] for p in pts], mode="markers+text",
                                 text=[f"{p['value']:g}" for p in pts], textposition="top center",
                                 marker={"symbol": symbols.get(rule, "circle"), "size": 10},
                                 name=names.get(rule, rule)))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def breadth_figure(name: str, breadth: dict) -> go.Figure:
    """Breadth against depth at equal compute: best of N starts (picked by the verifier) and one run spending the
    same NFE; the oracle (any start right) bounds what a better verifier could reach."""
    pts = breadth["points"]
    fig = _base(f"{name}: breadth vs depth at equal NFE", "function evaluations per problem", "exact-match accuracy")
    nfe = [p["nfe"] for p in pts]
    fig.add_trace(go.Scatter(x=nfe, y=[p["breadth_accuracy"] for p in pts], mode="lines+markers",
                             name=f"best of N starts (by {breadth['verifier']})", line={"color": "#d62728"}))
    fig.add_trace(go.Scatter(x=[p["depth_nfe"] for p in pts], y=[p["depth_accuracy"] for p in pts],
                             mode="lines+markers", name="one run, same NFE (depth)", line={"color": "#1f77b4"}))
    fig.add_trace(go.Scatter(x=nfe, y=[p["oracle_accuracy"] for p in pts], mode="lines", name="oracle: any start right",
                             line={"color": "#d62728", "dash": "dot", "width": 1}))
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def _position_axis(t: Trace) -> str:
    return "cell (row by row)" if per_cell(t) == "per cell" else "position in the string"


def front_figure(t: Trace, problem: int | None = None) -> go.Figure:
    """The front of the computation: output position (x) against iteration (y), coloured where the answer is
    still wrong. problem=None: the fraction of all n problems wrong at each cell; else one problem (0 or 1). On
    prefix sums the error front travels along the string; on mazes the dead ends fill in."""
    if problem is None:
        z = t.pos_error.astype(np.float32)
        title = f"Where the batch is wrong (fraction of {t.settings.n} problems)"
    else:
        target = t.targets[problem].reshape(-1)
        z = (t.preds[:, problem].reshape(t.iters, -1) != target).astype(np.float32)
        title = f"Where problem {problem} is wrong"
    fig = go.Figure(go.Heatmap(z=z.tolist(), x=list(range(z.shape[1])), y=t.k.tolist(), zmin=0, zmax=1,
                               colorscale=[[0, "#f7fbff"], [1, "#cb181d"]],
                               colorbar={"title": {"text": "wrong"}},
                               hovertemplate="cell %{x}, iteration %{y}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title={"text": title, "x": 0.02}, xaxis_title=_position_axis(t), yaxis_title="iteration",
                      template="plotly_white", height=340, margin={"l": 60, "r": 20, "t": 50, "b": 45})
    return fig


def settled_figure(t: Trace) -> go.Figure:
    """Histogram of the iteration at which each problem became right and stayed right (wrong at the end: left
    out, and counted in the title)."""
    at = t.settled_at()
    right = at[at > 0]
    fig = _base(f"When each problem became (and stayed) right: {right.size} of {t.settings.n}; "
                f"{t.settings.n - right.size} wrong at the end", "iteration", "problems", height=300)
    fig.add_trace(go.Histogram(x=right.tolist(), xbins={"start": 0.5, "end": t.iters + 0.5,
                                                        "size": max(1, math.ceil(t.iters / 60))},
                               marker_color=family_color(t.family), showlegend=False))
    fig.update_yaxes(tickformat="d")
    return fig


def difficulty_fit(difficulty: np.ndarray, solved_at: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line of the iteration at which each solved problem settled against
    its difficulty; None with fewer than two distinct difficulties among the solved."""
    ok = solved_at > 0
    d, k = difficulty[ok].astype(float), solved_at[ok].astype(float)
    if np.unique(d).size < 2:
        return None
    slope, intercept = np.polyfit(d, k, 1)
    return float(slope), float(intercept)


def difficulty_figure(t: Trace) -> go.Figure:
    """Each problem's settling iteration against its difficulty (the task's main measure), unsolved problems on the
    top edge, with the physical limit (difficulty / the model's reach per iteration) and the fitted slope."""
    name = next(iter(t.difficulty))
    d = np.asarray(t.difficulty[name])
    at = t.settled_at()
    ranked = d >= 0  # a negative value is a category, not a length (sudoku's -1: propagation stops, needs search)
    fit = difficulty_fit(d[ranked], at[ranked])
    bound = f"; limit: {1 / t.reach:.3g} iterations per unit (reach {t.reach} cells per iteration)" if t.reach else \
        "; no distance limit (the model reaches everywhere in one iteration)"
    slope = f"fitted {fit[0]:.3g} iterations per unit" if fit else "too few solved difficulties for a fit"
    axis = f"difficulty ({name}" + ("; -1: needs search)" if (~ranked).any() else ")")
    fig = _base(f"Iterations needed against difficulty: {slope}{bound}", axis, "iteration settled right", height=340)
    solved = at > 0
    color = family_color(t.family)
    fig.add_trace(go.Scatter(x=d[solved].tolist(), y=at[solved].tolist(), mode="markers", name="solved",
                             marker={"color": color, "size": 6, "opacity": 0.6}))
    if (~solved).any():
        fig.add_trace(go.Scatter(x=d[~solved].tolist(), y=[t.iters] * int((~solved).sum()), mode="markers",
                                 name=f"wrong at the end ({int((~solved).sum())})",
                                 marker={"color": "#d62728", "symbol": "x", "size": 7}))
    xs = np.linspace(0, max(1, int(d.max())), 50)
    if t.reach:
        fig.add_trace(go.Scatter(x=xs.tolist(), y=(xs / t.reach).tolist(), mode="lines", name="physical limit",
                                 line={"color": "#7f7f7f", "dash": "dash"}))
    if fit:
        fig.add_trace(go.Scatter(x=xs.tolist(), y=(fit[0] * xs + fit[1]).tolist(), mode="lines", name="fit",
                                 line={"color": color}))
    return fig

