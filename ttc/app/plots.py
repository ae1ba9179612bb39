"""Plotly figure builders for the dashboard (and for exports): traces in, `go.Figure` out.

Every builder is pure: the same inputs give the same figure, so the app, the exports and the tests
see the same data. Curves are labelled with the checkpoint name; colours follow the family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models import ConfigError, get_family
from tasks import get_task
from ttc.app.trace import Trace


def lighter(color: str, amount: float = 0.5) -> str:
    """The colour mixed with white (a non-default arch's tint of its family's colour)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c + (255 - c) * amount):02x}" for c in (r, g, b))


def family_color(family: str) -> str:
    """The family's own colour (its class says), or purple for a name no one registered."""
    try:
        return get_family(family).color
    except ConfigError:
        return "#9467bd"
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
MEMORY_LABELS = {"cuda_allocated": "GPU memory allocated (torch.cuda)",
                 "cpu_tensor_bytes": "tensor bytes held by the run (CPU)"}
MODE_STYLES = {"unrolled": ("#d62728", "solid", "circle"), "implicit": ("#2ca02c", "dash", "square"),
               "jfb": ("#1f77b4", "dot", "x")}  # colour, dash, marker: implicit and jfb often coincide
# inspector cell codes: plain 0/1 bits, then prediction bits right (0/1) and wrong (0/1)
_BIT_COLORS = ("#f2f2f2", "#595959", "#c7e9c0", "#238b45", "#fcbba1", "#cb181d")

Labelled = Sequence[tuple[str, Trace]]


def _base(title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "x": 0.02}, xaxis_title=x, yaxis_title=y, height=height,
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 45},
                      legend={"orientation": "h", "y": -0.25}, uirevision=title)
    return fig


def _style(traces: Labelled) -> dict[str, dict]:
    """Line style per label: the family's colour, a different dash per checkpoint of one family."""
    seen: dict[str, int] = {}
    out = {}
    for name, t in traces:
        i = seen.get(t.family, 0)
        seen[t.family] = i + 1
        out[name] = {"color": family_color(t.family), "dash": _DASHES[i % len(_DASHES)]}
    return out


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
        fig.update_layout(yaxis2={"title": {"text": "diverged samples"}, "overlaying": "y", "side": "right",
                                  "rangemode": "tozero", "showgrid": False})
    fig.update_layout(yaxis_type="log", yaxis_exponentformat="power")
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
        fig.add_trace(go.Scatter(x=xs, y=t.accuracy.tolist(), mode="lines", name=name, line=style[name]))
        if bits:
            fig.add_trace(go.Scatter(x=xs, y=t.bit_accuracy.tolist(), mode="lines", name=f"{name} (per bit)",
                                     line={**style[name], "dash": "dot", "width": 1}))
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def memory_figure(traces: Labelled) -> go.Figure:
    """Memory per iteration; the axis says which reading it is (CUDA allocator or CPU tensor bytes)."""
    kinds = {t.memory_kind for _, t in traces} or {"cpu_tensor_bytes"}
    label = " / ".join(MEMORY_LABELS.get(k, k) for k in sorted(kinds))
    fig = _base("Memory per iteration", "iteration", f"MiB: {label}")
    style = _style(traces)
    for name, t in traces:
        fig.add_trace(go.Scatter(x=t.k.tolist(), y=(t.memory_bytes / 2**20).tolist(), mode="lines", name=name,
                                 line=style[name]))
    fig.update_yaxes(rangemode="tozero")
    return fig


def live_figure(name: str, t: Trace) -> go.Figure:
    """Accuracy, residual and memory of a run in progress as one figure of three panels: a live frame
    redraws one chart instead of three, which keeps the browser's work per frame small."""
    mem = MEMORY_LABELS.get(t.memory_kind, t.memory_kind)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                        subplot_titles=("Accuracy vs iterations", "Residual per iteration (log)", f"MiB: {mem}"))
    color = family_color(t.family)
    k = t.k.tolist()
    fig.add_trace(go.Scatter(x=k, y=t.accuracy.tolist(), mode="lines", name=name, line={"color": color}), 1, 1)
    fig.add_trace(go.Scatter(x=k, y=t.bit_accuracy.tolist(), mode="lines", name=f"{name} (per bit)",
                             line={"color": color, "dash": "dot", "width": 1}), 1, 1)
    res = np.where(t.residual > 0, t.residual, np.nan)
    fig.add_trace(go.Scatter(x=k, y=res.tolist(), mode="lines", showlegend=False, line={"color": color}), 1, 2)
    fig.add_trace(go.Scatter(x=k, y=(t.memory_bytes / 2**20).tolist(), mode="lines", showlegend=False,
                             line={"color": color}), 1, 3)
    # no template: copying one costs more than the rest of the frame, and the app draws in its own theme
    fig.update_layout(title={"text": f"Running: iteration {t.iters} of {t.expected}", "x": 0.01}, height=340,
                      template=None, margin={"l": 50, "r": 20, "t": 70, "b": 40}, uirevision="live",
                      legend={"orientation": "h", "y": -0.2})
    x_max = max(t.expected, 2)
    fig.update_xaxes(range=[1, x_max], title_text="iteration")
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)
    return fig


def confidence_figure(t: Trace, problem: int, k: int) -> go.Figure:
    """The model's confidence (mean probability of its predicted class) on one problem, per iteration."""
    fig = _base(f"Confidence, problem {problem} (dots: all right)", "iteration", "mean class probability", height=260)
    fig.update_layout(showlegend=False)
    conf = t.confidence[:, problem] if t.iters else np.zeros(0)
    right = t.correct[:, problem] if t.iters else np.zeros(0, dtype=bool)
    fig.add_trace(go.Scatter(x=t.k.tolist(), y=conf.tolist(), mode="lines", name="confidence",
                             line={"color": family_color(t.family)}))
    fig.add_trace(go.Scatter(x=t.k[right].tolist(), y=conf[right].tolist(), mode="markers", name="whole answer right",
                             marker={"color": "#238b45", "size": 4}))
    if 1 <= k <= t.iters:
        fig.add_vline(x=k, line={"color": "#444", "dash": "dot"})
    fig.update_yaxes(range=[0.45, 1.02])
    return fig


def _bit_rows(rendered: dict) -> tuple[list[str], list[list[int]], list[list[str]]]:
    """Rows of the inspector's bit grid: inputs and target as plain bits, the prediction coloured."""
    names, codes, texts = [], [], []
    for key, val in rendered.items():
        if key in ("prediction", "correct") or not isinstance(val, str):
            continue
        names.append(key)
        codes.append([int(c) for c in val])
        texts.append(list(val))
    pred, ok = rendered.get("prediction"), rendered.get("correct")
    if pred is not None:
        names.append("prediction")
        codes.append([2 + int(c) + (0 if good else 2) for c, good in zip(pred, ok, strict=True)])
        texts.append(list(pred))
    return names, codes, texts


def example_figure(task_name: str, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None,
                   title: str) -> go.Figure:
    """One problem as the task renders it: bit rows (prediction green where right, red where wrong) or the
    maze with the predicted path over it (dark blue right, orange wrong)."""
    rendered = get_task(task_name).render(inputs, target, pred)
    if "image" in rendered:
        fig = _base(title, "", "", height=420)
        fig.add_trace(go.Image(z=rendered["image"], hoverinfo="skip"))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False, scaleanchor="x")
        return fig
    names, codes, texts = _bit_rows(rendered)
    width = len(codes[0])
    fig = _base(title, get_task(task_name).axis_label, "", height=120 + 30 * len(names))
    steps = []
    for i, c in enumerate(_BIT_COLORS):
        steps += [[i / len(_BIT_COLORS), c], [(i + 1) / len(_BIT_COLORS), c]]
    fig.add_trace(go.Heatmap(z=codes[::-1], y=names[::-1], text=texts[::-1], zmin=-0.5, zmax=len(_BIT_COLORS) - 0.5,
                             colorscale=steps, showscale=False, xgap=1, ygap=2, hoverinfo="x+y+text",
                             texttemplate="%{text}" if width <= 96 else None))
    return fig


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
    fig = _base(f"Training memory: {label}", "iterations (log)", f"MiB (log): {label}")
    for mode in dict.fromkeys(r["mode"] for r in rows):
        pts = sorted((r["iters"], r[key]) for r in rows if r["mode"] == mode and r.get(key) is not None)
        color, dash, symbol = MODE_STYLES.get(mode, ("#9467bd", "solid", "circle"))
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[max(p[1], 1) / 2**20 for p in pts], mode="lines+markers",
                                 name=mode, line={"color": color, "dash": dash}, marker={"symbol": symbol, "size": 9}))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", exponentformat="power")
    return fig
