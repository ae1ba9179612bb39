"""One problem as its task renders it (bit rows, a maze image, a digit grid) and its per-cell confidence."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from tasks import get_task, optional
from ttc.app.plots.style import _base, _legend_swatch, discrete_scale, family_color, fit_legend, rgb_hex
from ttc.app.trace import Trace

# inspector cell codes: plain 0/1 bits, then prediction bits right (0/1) and wrong (0/1)
_BIT_COLORS = ("#f2f2f2", "#595959", "#c7e9c0", "#238b45", "#fcbba1", "#cb181d")


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


_BIT_LEGEND = ("bit 0", "bit 1", "predicted 0, right", "predicted 1, right", "predicted 0, wrong",
               "predicted 1, wrong")


def _grid_figure(task_name: str, rendered: dict, title: str) -> go.Figure:
    """A digit grid (sudoku): givens dark, predicted cells blue where right and orange where wrong, each with its
    digit and, when known, the model's confidence in it; the wrong cells' hover names the right digit; thick lines
    between the boxes."""
    task = get_task(task_name)
    colors = dict(optional(task, "legend"))
    given = np.asarray(rendered["given"], dtype=bool)
    n = given.shape[0]
    wrong = np.asarray(rendered["wrong"], dtype=bool) if rendered["wrong"] is not None else np.zeros_like(given)
    code = np.where(given, 0, np.where(wrong, 2, 1))
    grid, target = np.asarray(rendered["grid"]), np.asarray(rendered["target"])
    conf = rendered.get("confidence")
    text, hover = [], []
    for i in range(n):
        row_t, row_h = [], []
        for j in range(n):
            c = "" if conf is None or given[i, j] else f"<br><span style='font-size:9px'>{conf[i][j]:.2f}</span>"
            row_t.append(f"<b>{grid[i, j]}</b>{c}")
            what = ("given" if given[i, j] else ("wrong, should be " + str(target[i, j]) if wrong[i, j] else "right"))
            extra = "" if conf is None else f", confidence {conf[i][j]:.2f}"
            row_h.append(f"row {i + 1}, column {j + 1}: {grid[i, j]} ({what}{extra})")
        text.append(row_t)
        hover.append(row_h)
    names = ("given", "predicted, right", "predicted, wrong")
    hexes = [rgb_hex(colors.get(name, (128, 128, 128))) for name in names]
    fig = _base(title, "", "", height=520)
    fig.add_trace(go.Heatmap(z=code.tolist(), text=text, customdata=hover, zmin=-0.5, zmax=2.5,
                             colorscale=discrete_scale(hexes),
                             showscale=False, xgap=1, ygap=1, texttemplate="%{text}",
                             textfont={"color": "white", "size": 15}, hovertemplate="%{customdata}<extra></extra>",
                             showlegend=False))
    b = int(round(np.sqrt(n)))
    for k in range(0, n + 1, b):  # box borders
        fig.add_shape(type="line", x0=k - 0.5, x1=k - 0.5, y0=-0.5, y1=n - 0.5, line={"color": "black", "width": 3})
        fig.add_shape(type="line", y0=k - 0.5, y1=k - 0.5, x0=-0.5, x1=n - 0.5, line={"color": "black", "width": 3})
    for name, color, i in zip(names, hexes, range(3), strict=True):
        if (code == i).any():
            _legend_swatch(fig, name, color)
    fig.update_xaxes(visible=False, range=[-0.6, n - 0.4])
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1})
    return fig


def example_figure(task_name: str, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None,
                   title: str, confidence: np.ndarray | None = None) -> go.Figure:
    """One problem as the task renders it: bit rows (prediction green where right, red where wrong), the
    maze with the predicted path over it (dark blue right, orange wrong), or a digit grid with each cell's
    confidence (sudoku); every colour is in the legend. Large problems get a larger figure and keep every cell
    (no gaps that hide cells); zoom and pan to look closer."""
    task = get_task(task_name)
    if optional(task, "shows_confidence"):
        rendered = task.render(inputs, target, pred, confidence=confidence)
    else:
        rendered = task.render(inputs, target, pred)
    if "grid" in rendered:
        return _grid_figure(task_name, rendered, title)
    if "image" in rendered:
        side = int(rendered["image"].shape[0])
        fig = _base(title, "", "", height=int(min(900, max(420, 4 * side + 120))))
        fig.add_trace(go.Image(z=rendered["image"], hoverinfo="skip"))
        for name, rgb in optional(get_task(task_name), "legend"):  # the renderer's own colours
            _legend_swatch(fig, name, rgb_hex(rgb))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False, scaleanchor="x")
        fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1})
        return fig
    names, codes, texts = _bit_rows(rendered)
    width = len(codes[0])
    fig = _base(title, get_task(task_name).axis_label, "", height=170 + 30 * len(names))
    fig.add_trace(go.Heatmap(z=codes[::-1], y=names[::-1], text=texts[::-1], zmin=-0.5, zmax=len(_BIT_COLORS) - 0.5,
                             colorscale=discrete_scale(_BIT_COLORS), showscale=False,
                             xgap=1 if width <= 128 else 0, ygap=2,
                             hoverinfo="x+y+text", texttemplate="%{text}" if width <= 96 else None,
                             showlegend=False))
    used = {c for row in codes for c in row}
    for i, (label, color) in enumerate(zip(_BIT_LEGEND, _BIT_COLORS, strict=True)):
        if i in used:
            _legend_swatch(fig, label, color)
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fit_legend(fig, per_row=3)  # the colour key under the rows, three swatches a line

