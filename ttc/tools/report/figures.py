"""The report's figures: accuracy and residual against iterations, iterations against size and difficulty; writing
them in each format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from models import get_family
from tasks import get_task
from ttc.app import export
from ttc.app.plots import LOG_AXIS, LOG_SMALL, add_wilson_band, family_color, fit_legend, lighter
from ttc.tools.report.curves import Curve

_DASH = {1: "solid", 2: "dot", 4: "dash", 8: "dashdot", 16: "longdash"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.02}, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      height=420, width=820, margin={"l": 60, "r": 20, "t": 50, "b": 45})
    return fit_legend(fig, per_row=2)  # every entry listed under the chart, however many curves


def _line(c: Curve) -> dict:
    """Colour by family (a lighter tint for a non-default arch such as the transformer), dash by size multiple."""
    color = family_color(c.family)
    if c.arch != get_task(c.task).default_arch:
        color = lighter(color)
    return {"color": color, "dash": _DASH.get(c.factor, "solid")}


def accuracy_figure(task: str, curves: list[Curve]) -> go.Figure:
    """Accuracy vs iterations: colour by family, dash by size multiple."""
    fig = go.Figure()
    for c in curves:
        fig.add_trace(go.Scatter(x=list(range(1, len(c.accuracy) + 1)), y=c.accuracy, mode="lines",
                                 name=f"{c.checkpoint} @ {c.size} (n={c.n})", line=_line(c),
                                 legendgroup=f"{c.checkpoint} @ {c.size} (n={c.n})"))
    for c in curves:  # 95% Wilson bands, after the curves, each in its curve's legend group
        add_wilson_band(fig, list(range(1, len(c.accuracy) + 1)), np.asarray(c.accuracy), c.n, _line(c)["color"],
                        f"{c.checkpoint} @ {c.size} (n={c.n})")
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(range=[-0.02, 1.02])
    return _layout(fig, f"{task}: accuracy vs iterations", "iterations (log)", "exact-match accuracy")


def residual_figure(task: str, curves: list[Curve]) -> go.Figure:
    fig = go.Figure()
    for c in curves:
        y = [v if v is not None and v > 0 else None for v in c.residual]
        fig.add_trace(go.Scatter(x=list(range(1, len(y) + 1)), y=y, mode="lines",
                                 name=f"{c.checkpoint} @ {c.size}", line=_line(c)))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_SMALL)
    return _layout(fig, f"{task}: residual ||z_k - z_(k-1)|| / ||z_k|| (DEQ: solver residual)",
                   "iterations (log)", "relative residual (log)")


def scaling_figure(task: str, by_ck: dict[str, list[Curve]], fits: dict[str, dict | None]) -> go.Figure:
    """Iterations to near-best accuracy vs problem size, log-log, one line per looped checkpoint."""
    fig = go.Figure()
    for name, curves in by_ck.items():
        fit = fits.get(name)
        label = name + (f" (~ size^{fit['exponent']:.2f})" if fit else "")
        fig.add_trace(go.Scatter(x=[c.size for c in curves], y=[c.near_best_iter for c in curves],
                                 mode="lines+markers", name=label,
                                 text=[f"best {c.best_accuracy:.0%}" for c in curves],
                                 hovertemplate="size %{x}: %{y} iterations, %{text}<extra></extra>",
                                 line={"color": _line(curves[0])["color"]},
                                 marker={"symbol": ["circle" if c.best_accuracy >= 0.5 else "x" for c in curves],
                                         "size": 9}))
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(**LOG_AXIS)
    return _layout(fig, f"{task}: iterations to reach the best accuracy vs size (x: best < 50%)",
                   "problem size (log)", "iterations (log)")


def difficulty_figure(task: str, rows: list[dict]) -> go.Figure:
    """Median iterations to a lasting right answer against difficulty, one line per checkpoint, with each reach's
    physical limit dashed; x marks a difficulty where fewer than half the problems were solved."""
    fig = go.Figure()
    # measured groups (sudoku) draw one line per checkpoint and size; "needs search" (-1) has no place on the axis
    rows = [dict(r, checkpoint=f"{r['checkpoint']} @ {r['size']}") if r.get("measured") else r for r in rows
            if r.get("difficulty", 0) >= 0 or not r.get("measured")]
    for name in dict.fromkeys(r["checkpoint"] for r in rows):
        pts = [r for r in rows if r["checkpoint"] == name and r.get("n")]
        color = get_family(pts[0]["family"]).color if pts else None
        fig.add_trace(go.Scatter(x=[r["difficulty"] for r in pts], y=[r["median_iters"] for r in pts],
                                 mode="lines+markers", name=name, line={"color": color},
                                 marker={"symbol": ["circle" if r["solved"] >= r["n"] / 2 else "x" for r in pts],
                                         "size": 9},
                                 text=[f"accuracy {r['accuracy']:.0%}" for r in pts],
                                 hovertemplate="difficulty %{x}: %{y} iterations, %{text}<extra></extra>"))
        if pts and pts[0].get("reach"):
            fig.add_trace(go.Scatter(x=[r["difficulty"] for r in pts], y=[r["bound"] for r in pts], mode="lines",
                                     name=f"{name}: limit (reach {pts[0]['reach']})",
                                     line={"color": color, "dash": "dash", "width": 1}))
    measure = next((r.get("measure") for r in rows if r.get("measure")), "difficulty")
    return _layout(fig, f"{task}: iterations needed against difficulty (dashed: the physical limit)",
                   f"difficulty ({measure})", "median iteration settled right")


def write_figure(fig: go.Figure, folder: Path, stem: str, formats: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Write the figure in each format; returns (files written, reasons for formats that could not be)."""
    folder.mkdir(parents=True, exist_ok=True)
    files, why = [], []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "html":  # plotly.js once per folder, beside the pages: they open offline
            js = folder / "plotly.min.js"
            if not js.exists():
                from plotly.offline import get_plotlyjs

                js.write_text(get_plotlyjs())
            path.write_text(fig.to_html(include_plotlyjs="directory", full_html=True))
        else:
            ok, reason = export.static_export_status()
            if not ok:
                why.append(f"{fmt.upper()} not written: {reason}")
                continue
            try:
                path.write_bytes(export.to_image(fig, fmt))
            except Exception as e:  # a browser that fails to start: the other formats still go out
                why.append(f"{fmt.upper()} not written: {type(e).__name__}: {e}")
                continue
        files.append(path.name)
    return files, why

