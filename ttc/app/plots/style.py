"""What every figure shares: colours, log axes, legends laid out for their width, bands, the base layout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from models import ConfigError, families, get_family
from tasks import TaskError, get_task
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


Labelled = Sequence[tuple[str, Trace]]
# Log axes of counts (iterations, sizes, NFE, MiB) write every label as a plain number (20, 50, 200): neither bare
# minor digits ("2", "5") nor "2x10" with a superscript too small to read. Log axes of small values (residuals)
# label only the powers of ten (10^-3), which stay readable however many decades the axis spans.
LOG_AXIS = {"type": "log", "exponentformat": "none", "minorloglabels": "complete"}
LOG_SMALL = {"type": "log", "exponentformat": "power", "minorloglabels": "none"}


LEGEND_ROW_PX = 22  # one legend line at the default font (about 19 px), with room to spare
LEGEND_PAD_PX = 16  # the legend box's own padding, and a gap below the x-axis title


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
    placed_by_us = isinstance(fig.layout.meta, dict) and "base_height" in fig.layout.meta
    if not entries or fig.layout.showlegend is False or (fig.layout.legend.orientation == "v" and not placed_by_us):
        return fig  # nothing to list, or a legend the figure placed itself (a grid's colour key at its right)
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    base_h = meta.setdefault("base_height", fig.layout.height or 320)
    base_b = meta.setdefault("base_margin_b", fig.layout.margin.b if fig.layout.margin.b is not None else 45)
    per_row = max(1, int(per_row or meta.get("legend_per_row") or 1))
    meta["legend_per_row"] = per_row
    lines = -(-entries // per_row)
    extra = LEGEND_ROW_PX * lines + LEGEND_PAD_PX
    if per_row == 1:  # one entry a line from the plot's left edge, each as wide as its text (never cut)
        legend = {"orientation": "v", "x": 0, "xanchor": "left"}
    else:  # a fixed fraction of the plot's width per entry, so the number of lines is known
        legend = {"orientation": "h", "x": 0, "xanchor": "left", "entrywidthmode": "fraction",
                  "entrywidth": 0.98 / per_row}
    fig.update_layout(meta=meta, height=base_h + extra, margin={"b": base_b + extra},
                      legend={**legend, "yref": "container", "y": 0, "yanchor": "bottom", "tracegroupgap": 0})
    return fig


def add_budget_line(fig: go.Figure, x: float, label: str) -> None:
    """A dotted vertical line at x (e.g. the iterations a model was trained at), named in the legend rather than
    written on the chart: a label on the chart is crossed by the curves and stretches the axis to fit."""
    fig.add_vline(x=x, line_dash="dot", line_color="#7f7f7f")
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label, hoverinfo="skip",
                             line={"color": "#7f7f7f", "dash": "dot", "width": 1}))


def _base(title: str, x: str, y: str, height: int = 320, subtitle: str = "") -> go.Figure:
    """A figure with its title (and what its axis measures as a subtitle: a y-axis title longer than the plot is
    tall runs into the chart's title), short axis titles, the white template."""
    fig = go.Figure()
    head = {"text": title, "x": 0.02, **({"subtitle": {"text": subtitle}} if subtitle else {})}
    fig.update_layout(title=head, xaxis_title=x, yaxis_title=y, height=height + (14 if subtitle else 0),
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 64 if subtitle else 50, "b": 45},
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


def _legend_swatch(fig: go.Figure, name: str, color: str) -> None:
    """A legend entry for a colour of an image or heat map (a marker with no data)."""
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                             marker={"symbol": "square", "size": 12, "color": color,
                                     "line": {"color": "#999999", "width": 1}}))

