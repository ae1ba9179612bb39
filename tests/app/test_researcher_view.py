"""What the dashboard shows a researcher beyond the curves: 95% Wilson bands with their n, the front of the
computation (where the answer is still wrong, per cell and iteration, and when each problem settled), memory read
and write maps, family series, and the figure fixes a new user asked for (log ticks, integer counts, legends,
divergence named as such, readable bundles)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from tests.dashboard_checkpoints import make_checkpoints
from ttc.app import catalog, export, plots
from ttc.app.settings import sanitize
from ttc.app.trace import compute_trace, peak_note
from ttc.engine.evaluate import wilson

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    make_checkpoints(folder)
    from models import ModelConfig, build_model
    from ttc.engine.checkpoint import save_checkpoint

    save_checkpoint(folder / "prefix_sums-memory.safetensors",
                    build_model(ModelConfig(family="memory", arch="conv1d", in_channels=1, width=8, depth=1, layers=4,
                                            slots=3), seed=1), "prefix_sums")
    return [catalog.load_file_entry(s) for s in catalog.file_stamps(folder)]


def trace(entries, **kw):
    s, _ = sanitize({"size": "16", "n": "12", "budget": "9", **{k: str(v) for k, v in kw.items()}}, entries)
    e = next(e for e in entries if e.name == s.checkpoint)
    return compute_trace(e.ck, s)


def test_wilson_interval_matches_the_formula_and_stays_in_range():
    lo, hi = wilson(np.array([0.0, 0.5, 1.0]), 10)
    # Wilson (1927): p = 0.5, n = 10 -> [0.2366, 0.7634]; at 0 and 1 the interval is one-sided but not empty
    assert lo[1] == pytest.approx(0.2366, abs=1e-4) and hi[1] == pytest.approx(0.7634, abs=1e-4)
    assert lo[0] == 0.0 and 0.2 < hi[0] < 0.35 and hi[2] == 1.0 and 0.65 < lo[2] < 0.8
    narrow = wilson(np.array([0.5]), 1000)
    assert narrow[1][0] - narrow[0][0] < hi[1] - lo[1]  # more problems, a narrower band


def test_every_accuracy_curve_has_its_band_and_its_n(entries):
    t = trace(entries)
    fig = plots.accuracy_figure([("a", t)], bits=True).to_plotly_json()
    names = [d.get("name") for d in fig["data"]]
    assert names[0] == "a" and names[1] == "a (per bit)" and "a: 95% interval (n=12)" in names
    band = next(d for d in fig["data"] if d.get("name") == "a: 95% interval (n=12)")
    upper = fig["data"][names.index("a: 95% interval (n=12)") - 1]
    lo, hi = wilson(t.accuracy, 12)
    assert np.allclose(band["y"], lo) and np.allclose(upper["y"], hi) and band["fill"] == "tonexty"
    live = plots.live_figure("a", t).to_plotly_json()
    assert any(d.get("name") == "a: 95% interval (n=12)" for d in live["data"])


def test_a_live_figure_updated_in_place_is_the_figure_built_from_that_snapshot(entries):
    """Explore builds one live figure per run and replaces its data each frame; every frame must be exactly the
    figure built from scratch for that snapshot (curves, band, residual, memory, title, panel titles)."""
    from ttc.app.trace import LiveRun

    s, _ = sanitize({"size": "16", "n": "12", "budget": "9"}, entries)
    run = LiveRun(next(e for e in entries if e.name == s.checkpoint).ck, s)
    live, seen = None, 0
    for _ in run:
        t = run.trace(maps=False)
        live = live or plots.LiveFigure("a", t)
        assert live.update(t).to_plotly_json() == plots.live_figure("a", t).to_plotly_json(), t.iters
        seen += 1
    assert seen == 9 and live.figure.layout.title.text == "Running: iteration 9 of 9"
    assert len(live.figure.data[plots.LiveFigure.CURVE].x) == 9


def test_the_front_of_the_computation_and_when_problems_settled(entries):
    t = trace(entries, budget=12)
    assert t.pos_error.shape == (12, 16)
    wrong = (t.preds[:, 0].reshape(12, -1) != t.targets[0].reshape(-1))
    one = plots.front_figure(t, 0).to_plotly_json()["data"][0]
    assert np.array_equal(np.asarray(one["z"]), wrong.astype(float))
    batch = plots.front_figure(t).to_plotly_json()["data"][0]
    assert np.allclose(np.asarray(batch["z"]), t.pos_error.astype(float))
    # the batch error of cell j at iteration k is the fraction of all n problems wrong there (all 12 are shown)
    assert t.shown == t.settings.n == 12
    every = (t.preds.reshape(12, 12, -1) != t.targets.reshape(1, 12, -1)).mean(axis=1)
    assert np.allclose(t.pos_error.astype(float), every, atol=1e-3)
    at = t.settled_at()
    for i in range(t.settings.n):
        c = t.correct[:, i]
        if not c[-1]:
            assert at[i] == 0
        else:
            assert c[at[i] - 1:].all() and (at[i] == 1 or not c[at[i] - 2])
    hist = plots.settled_figure(t).to_plotly_json()
    assert sorted(hist["data"][0]["x"]) == sorted(int(a) for a in at if a > 0)


def test_a_memory_trace_keeps_its_maps_and_series(entries):
    t = trace(entries, checkpoint="prefix_sums-memory")
    assert set(t.series) == {"memory_norm", "read_entropy", "write_entropy"}
    assert t.series["memory_norm"].shape == (9, 12)
    assert t.maps["read"].shape == (9, t.maps_shown, 16, 3) and t.maps_shown >= 1
    fig = plots.memory_access_figure(t, 0, 9, ("read", "write")).to_plotly_json()
    assert np.allclose(np.asarray(fig["data"][0]["z"]).sum(axis=0), 1.0, atol=1e-2)  # weights over slots
    series = plots.series_figure("m", t, "memory_norm").to_plotly_json()
    assert np.allclose(series["data"][2]["y"], t.series["memory_norm"].mean(axis=1), atol=1e-5)
    assert t.eval_json()["memory_norm"] == pytest.approx(t.series["memory_norm"].mean(axis=1).tolist(), abs=1e-5)


def test_log_axes_never_write_bare_digits_or_tiny_exponents_and_counts_are_integers(entries):
    t = trace(entries)
    res = plots.residual_figure([("a", t)]).to_plotly_json()["layout"]
    # residuals: only the powers of ten are labelled (10^-3), never "2" or "5" between them
    assert res["yaxis"]["type"] == "log" and res["yaxis"]["minorloglabels"] == "none"
    assert res["yaxis"]["exponentformat"] == "power"
    # counts (iterations, NFE, sizes): plain numbers (20, 50), never "2x10" with an unreadable superscript
    assert plots.LOG_AXIS["exponentformat"] == "none" and plots.LOG_AXIS["minorloglabels"] == "complete"
    t.diverged[:] = np.minimum(np.arange(1, t.iters + 1) * 9, 79)  # 79 of 100 diverging, as a user saw
    lay = plots.residual_figure([("a", t)]).to_plotly_json()["layout"]
    assert lay["yaxis2"]["tickformat"] == "d" and float(lay["yaxis2"]["dtick"]).is_integer()
    assert lay["yaxis"]["type"] == "log" and lay["yaxis2"].get("type") != "log"
    assert plots.count_dtick(79) == 20 and plots.count_dtick(3) == 1


def test_a_falling_curve_with_diverged_samples_is_named_divergence(entries):
    t = trace(entries)
    t.accuracy[:] = np.linspace(0.9, 0.1, t.iters)
    t.diverged[-1] = 7
    assert "diverge" in peak_note(t, "x") and "overthink" not in peak_note(t, "x").replace("not overthinking", "")
    t.diverged[-1] = 0
    assert "it overthinks" in peak_note(t, "x")


def test_every_inspector_colour_is_in_a_legend_and_large_strips_have_no_gaps(entries):
    t = trace(entries, size=512, n=2)
    fig = plots.example_figure("prefix_sums", t.inputs[0], t.targets[0], t.preds[-1, 0], "x").to_plotly_json()
    assert fig["data"][0]["xgap"] == 0 and len(fig["data"][0]["z"][0]) == 512  # every one of the 512 cells
    legend = [d["name"] for d in fig["data"][1:]]
    assert "bit 0" in legend and "bit 1" in legend and any(n.startswith("predicted") for n in legend)
    m = trace(entries, task="mazes", checkpoint="mazes-recursive", size=31, n=2)
    mf = plots.example_figure("mazes", m.inputs[0], m.targets[0], m.preds[-1, 0], "x").to_plotly_json()
    from tasks import get_task

    legend = get_task("mazes").legend
    assert [d["name"] for d in mf["data"][1:]] == [name for name, _ in legend]
    rendered = get_task("mazes").render(m.inputs[0], m.targets[0], m.preds[-1, 0])["image"]
    drawn = {tuple(int(c) for c in px) for px in rendered.reshape(-1, 3)}
    assert drawn <= {rgb for _, rgb in legend}  # every colour the renderer draws is in the legend
    acc = plots.accuracy_figure([("m", m)], bits=True).to_plotly_json()
    assert acc["data"][1]["name"] == "m (per cell)"


def test_a_run_bundle_unzips_readable_by_everyone(entries):
    t = trace(entries)
    e = next(e for e in entries if e.name == t.settings.checkpoint)
    data = export.run_bundle(t, t.settings.checkpoint, e.weights(), "b")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_a_run_whose_samples_all_stopped_says_where(entries):
    from ttc.app.trace import done_text

    t = trace(entries, budget=12)
    assert done_text(t).startswith("Done: 12 iterations")
    t.nfe[5:] = t.nfe[5]  # a solver that stopped every sample at iteration 6
    assert done_text(t).startswith("Done: every sample stopped at iteration 6 of 12 (6 function evaluations")


def test_legends_sit_under_the_axis_title_and_bands_have_no_entry_of_their_own(entries):
    """Five curves with their bands: five legend entries (a band follows its curve's legend group), laid out under
    the chart in a known number of lines, the figure taller by those lines so the plot keeps its height; fitting
    twice changes nothing."""
    t = trace(entries)
    runs = [(f"run {i}", t) for i in range(5)]
    fig = plots.accuracy_figure(runs)
    assert plots.legend_entries(fig) == 5
    bands = [tr for tr in fig.data if tr.name and "95% interval" in tr.name]
    assert len(bands) == 10 and all(tr.showlegend is False for tr in bands)
    assert {tr.legendgroup for tr in bands} == {name for name, _ in runs}
    height = fig.layout.height
    plots.fit_legend(fig)
    lay = fig.layout
    # one entry a line from the plot's left edge, under the x-axis title
    assert lay.legend.orientation == "v" and lay.legend.x == 0 and lay.legend.yref == "container"
    assert lay.legend.y == 0 and lay.legend.yanchor == "bottom"
    assert lay.height == height + 5 * plots.LEGEND_ROW_PX + plots.LEGEND_PAD_PX
    assert lay.margin.b > 5 * plots.LEGEND_ROW_PX
    before = fig.to_plotly_json()["layout"]
    plots.fit_legend(fig)
    assert fig.to_plotly_json()["layout"] == before
    two = plots.fit_legend(plots.accuracy_figure(runs), per_row=2).layout
    assert two.height == height + 3 * plots.LEGEND_ROW_PX + plots.LEGEND_PAD_PX
    assert two.legend.entrywidth == pytest.approx(0.49)


def test_the_training_depth_is_a_legend_entry_not_a_label_on_the_chart(entries):
    fig = plots.accuracy_figure([("a", trace(entries))])
    plots.add_budget_line(fig, 30, "trained at 30 iterations")
    assert not fig.layout.annotations  # nothing written over the curves, nothing stretching the axis
    assert fig.layout.shapes[0].x0 == 30 and "trained at 30 iterations" in [tr.name for tr in fig.data]


def test_a_figure_keeps_the_legend_layout_it_chose(entries):
    """A maze image keeps its colour key at its right; bit rows keep three swatches a line when the dashboard or an
    export fits the legend again."""
    import numpy as np

    from tasks import get_task

    x, y = get_task("mazes").generate(7, 1, 0)
    maze = plots.example_figure("mazes", x[0], y[0], y[0], "maze")
    plots.fit_legend(maze)
    assert maze.layout.legend.orientation == "v"
    t = trace(entries)
    bits = plots.example_figure("prefix_sums", t.inputs[0], t.targets[0], t.preds[-1, 0], "x")
    height = bits.layout.height
    plots.fit_legend(bits)
    assert bits.layout.legend.entrywidth == pytest.approx(0.98 / 3) and bits.layout.height == height
    assert np.isfinite(height)


def test_csv_and_json_exports_write_float32_numbers_in_their_shortest_form():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=np.array([0.01, 0.3, 1 / 3], dtype=np.float32), name="a"))
    csv = export.to_csv(fig)
    assert csv.splitlines()[1:] == ["a,1,0.01", "a,2,0.3", "a,3,0.33333334"]
    assert "0.009999999776482582" not in export.to_json(fig)
    assert export._plain([0.1, 2.5]) == [0.1, 2.5]  # a float64 number stays as it is


def test_a_legend_only_trace_adds_no_rows_to_the_csv(entries):
    """The training depth's legend entry is a point at (None, None): the CSV keeps integer iterations (a row of it
    once turned the x column into floats, 1.0, 2.0, ...)."""
    fig = plots.accuracy_figure([("a", trace(entries))])
    plots.add_budget_line(fig, 6, "trained at 6 iterations")
    table = export.figure_table(fig)
    assert "trained at 6 iterations" not in set(table["trace"])
    assert export.to_csv(fig).splitlines()[1].startswith("a,1,")


def test_the_report_figure_lists_every_curve_and_no_band(tmp_path):
    """The findings figure once cut its legend at 11 of 18 entries: every curve is a legend entry, no band is."""
    from ttc.tools.report import Curve
    from ttc.tools.report.figures import accuracy_figure

    curves = [Curve(checkpoint=f"prefix_sums-recursive-{i}", family="recursive", arch="conv1d", task="prefix_sums",
                    size=32, factor=1, n=100, budget=3, accuracy=[0.1, 0.5, 0.9], residual=[1.0, 0.1, 0.01],
                    nfe=[1, 2, 3], seconds=0.1, stop="budget", converged=0, diverged=0, note="", fixed_depth=False)
              for i in range(18)]
    fig = accuracy_figure("prefix_sums", curves)
    shown = [tr.name for tr in fig.data if tr.showlegend is not False]
    assert len(shown) == 18 and not [n for n in shown if "interval" in n]
    assert fig.layout.legend.orientation == "h" and fig.layout.height >= 420 + 9 * plots.LEGEND_ROW_PX
