"""Plotly figure builders for the dashboard (and for exports): traces in, `go.Figure` out.

Every builder is pure: the same inputs give the same figure, so the app, the exports and the tests
see the same data. Curves are labelled with the checkpoint name; colours follow the family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models import ConfigError, families, get_family
from tasks import TaskError, get_task, optional
from ttc.app.trace import Trace
from ttc.engine.evaluate import wilson


def lighter(color: str, amount: float = 0.5) -> str:
    """The colour mixed with white (a non-default arch's tint of its family's colour)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c + (255 - c) * amount):02x}" for c in (r, g, b))


def rgb_hex(rgb: Sequence[int]) -> str:
    """(r, g, b) 0..255 -> "#rrggbb" (a task's legend colours for plotly)."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def discrete_scale(colors: Sequence[str]) -> list[list]:
    """A plotly colorscale that maps the integer codes 0..len(colors)-1 (with zmin -0.5, zmax len - 0.5) each to
    one flat colour."""
    steps: list[list] = []
    for i, c in enumerate(colors):
        steps += [[i / len(colors), c], [(i + 1) / len(colors), c]]
    return steps


def family_color(family: str) -> str:
    """The family's own colour (its class says), or purple for a name no one registered."""
    try:
        return get_family(family).color
    except ConfigError:
        return "#9467bd"
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
MEMORY_LABELS = {"cuda_allocated": "GPU memory allocated (torch.cuda)",
                 "cpu_tensor_bytes": "tensor bytes held by the run (CPU)"}


def mode_style(mode: str) -> tuple[str, str, str]:
    """(colour, dash, marker) of a memory mode, as the family that declares it draws it (grey if none does)."""
    for fam in families():
        if mode in fam.memory_mode_styles:
            return fam.memory_mode_styles[mode]
    return ("#7f7f7f", "solid", "circle")


def series_label(family: str, series: str) -> str:
    """The axis label the family gives one of its extra series (its name, spaced, if none)."""
    try:
        labels = get_family(family).series_labels
    except ConfigError:
        labels = {}
    return labels.get(series, series.replace("_", " "))
# inspector cell codes: plain 0/1 bits, then prediction bits right (0/1) and wrong (0/1)
_BIT_COLORS = ("#f2f2f2", "#595959", "#c7e9c0", "#238b45", "#fcbba1", "#cb181d")

Labelled = Sequence[tuple[str, Trace]]
# Log axes of counts (iterations, sizes, NFE, MiB) write every label as a plain number (20, 50, 200): neither bare
# minor digits ("2", "5") nor "2x10" with a superscript too small to read. Log axes of small values (residuals)
# label only the powers of ten (10^-3), which stay readable however many decades the axis spans.
LOG_AXIS = {"type": "log", "exponentformat": "none", "minorloglabels": "complete"}
LOG_SMALL = {"type": "log", "exponentformat": "power", "minorloglabels": "none"}
LEGEND_ROW_PX = 20  # one legend line at the default font


def legend_entries(fig: go.Figure) -> int:
    """How many entries the figure's legend lists (named traces whose showlegend is not False)."""
    return sum(1 for tr in fig.data if tr.name and tr.showlegend is not False)


def fit_legend(fig: go.Figure, per_row: int | None = None) -> go.Figure:
    """Lay the legend out for the width it gets: below the chart, under the x-axis title (never over it), `per_row`
    entries a line (each a fixed fraction of the width, so the line count is known), and the figure taller by
    as many lines as the legend needs so the plot keeps its height. Idempotent: the figure's own height and
    entries a line (per_row, default 1) are kept in layout.meta the first time, so a later call without per_row
    (the dashboard's, an export's) keeps what the figure chose. A figure without legend entries is left as it is."""
    entries = legend_entries(fig)
    if not entries or fig.layout.showlegend is False or fig.layout.legend.orientation == "v":
        return fig  # nothing to list, or a legend the figure placed itself (a grid's colour key at its right)
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    base_h = meta.setdefault("base_height", fig.layout.height or 320)
    base_b = meta.setdefault("base_margin_b", fig.layout.margin.b if fig.layout.margin.b is not None else 45)
    per_row = max(1, int(per_row or meta.get("legend_per_row") or 1))
    meta["legend_per_row"] = per_row
    lines = -(-entries // per_row)
    extra = LEGEND_ROW_PX * lines + 10
    fig.update_layout(meta=meta, height=base_h + extra, margin={"b": base_b + extra},
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0,
                              "xanchor": "left", "entrywidthmode": "fraction", "entrywidth": 0.98 / per_row,
                              "tracegroupgap": 0})
    return fig


def add_budget_line(fig: go.Figure, x: float, label: str) -> None:
    """A dotted vertical line at x (e.g. the iterations a model was trained at), named in the legend rather than
    written on the chart: a label on the chart is crossed by the curves and stretches the axis to fit."""
    fig.add_vline(x=x, line_dash="dot", line_color="#7f7f7f")
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label, hoverinfo="skip",
                             line={"color": "#7f7f7f", "dash": "dot", "width": 1}))


def _base(title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "x": 0.02}, xaxis_title=x, yaxis_title=y, height=height,
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 45},
                      uirevision=title)
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


def per_cell(t: Trace) -> str:
    """What the per-output accuracy counts: bits of a string, cells of a grid."""
    try:
        return "per cell" if get_task(t.settings.task).spatial_dims == 2 else "per bit"
    except TaskError:  # a task nobody registered: say it plainly
        return "per output cell"


def count_dtick(most: int, ticks: int = 5) -> int:
    """A whole-number tick step for an axis of counts up to `most` (about `ticks` ticks, never 15.7 samples)."""
    step = max(1, math.ceil(most / ticks))
    for nice in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if nice >= step:
            return nice
    return step


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


def add_wilson_band(fig: go.Figure, xs: list, accuracy: np.ndarray, n: int, color: str, name: str,
                    row: int | None = None, col: int | None = None) -> None:
    """The 95% Wilson interval of an exact-match accuracy over n problems, as a shaded band (two traces) in the
    legend group of its curve (named `name`): no legend entry of its own, and hiding the curve hides its band."""
    if not len(xs):
        return
    lo, hi = wilson(np.asarray(accuracy, dtype=np.float64), n)
    add_band(fig, xs, lo, hi, color, f"{name}: 95% interval (n={n})", _rgba(color, 0.15),
             upper=f"{name}: 95% interval, upper", group=name, **({"row": row, "col": col} if row is not None else {}))


def add_band(fig: go.Figure, xs: list, lo: np.ndarray, hi: np.ndarray, color: str, name: str, fill: str,
             upper: str | None = None, group: str | None = None, **where) -> None:
    """A shaded band between lo and hi: an invisible upper edge (named `upper`) and the lower edge filled up to it.
    With `group` (its curve's legend group) the band has no legend entry and follows the curve; without, the band
    is its own legend entry. where: row and col of a subplot."""
    fig.add_trace(go.Scatter(x=xs, y=hi.tolist(), mode="lines", line={"width": 0, "color": color}, hoverinfo="skip",
                             showlegend=False, legendgroup=group or f"band-{name}", name=upper), **where)
    fig.add_trace(go.Scatter(x=xs, y=lo.tolist(), mode="lines", line={"width": 0, "color": color}, fill="tonexty",
                             fillcolor=fill, name=name, legendgroup=group or f"band-{name}", hoverinfo="skip",
                             showlegend=group is None), **where)


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


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


def _legend_swatch(fig: go.Figure, name: str, color: str) -> None:
    """A legend entry for a colour of an image or heat map (a marker with no data)."""
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                             marker={"symbol": "square", "size": 12, "color": color,
                                     "line": {"color": "#999999", "width": 1}}))


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
        color, dash, symbol = mode_style(mode)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[max(p[1], 1) / 2**20 for p in pts], mode="lines+markers",
                                 name=mode, line={"color": color, "dash": dash}, marker={"symbol": symbol, "size": 9}))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_AXIS)
    return fig


def series_figure(name: str, t: Trace, series: str) -> go.Figure:
    """One of the family's extra per-iteration series (a memory model's slot norms, an EBM's energy): the mean
    over the finite samples with the band from the 10th to the 90th percentile."""
    v = t.series[series].astype(np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    label = series_label(t.family, series)
    fig = _base(f"{label} per iteration", "iteration", label, height=280)
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
