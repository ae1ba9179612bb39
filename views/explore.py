"""Explore: one checkpoint on one task, size and budget; residual, accuracy and memory drawn live while
the run goes, metrics, and an inspector that scrubs through the iterations of one problem."""

import os
import time
from dataclasses import replace

import streamlit as st

from tasks import get_task
from ttc.app import export, plots
from ttc.app.settings import for_run, precision_of
from ttc.app.trace import LIVE_FRAME_SECONDS, LiveRun, Trace, done_text, peak_note
from ttc.engine.limits import run_cost
from views._common import (
    chart,
    chart_with_export,
    export_buttons,
    is_cached,
    remember_trace,
    settings_sidebar,
    trace_for,
)

# a run estimated longer than this waits for Run ($TTC_AUTO_RUN_SECONDS; the browser tests raise it for their
# long live runs, whose estimate from a first tiny run is pessimistic)
AUTO_RUN_SECONDS = float(os.environ.get("TTC_AUTO_RUN_SECONDS", "15"))
# cost units (problems x cells x iterations x width^2) per second of a dashboard run on the 2-core machine, 2 threads:
# 2.6e9 prefix_sums-recursive (512 bits), 2.0e9 prefix_sums-memory (256), 1.0e9 mazes-recursive (33), 100 problems
# and 100 iterations each; the session's own last run replaces it
COST_PER_SECOND = 1.5e9
DRAW_EVERY = LIVE_FRAME_SECONDS  # seconds from one live frame to the next: about 8 a second
# A session's first run is started by the browser (a fragment's timer) once the page is drawn, and its first
# frames come one a second: with live frames coming at once, Run and Stop stayed grey placeholders for 30 s and more
# (docs/dashboard.md, "Why a new page's first run waits a second").
FIRST_RUN_EVERY, FIRST_RUN_SETTLE, FIRST_RUN_START_AFTER = 1.0, 5.0, 1.0
PLAIN = {"delta_color": "off", "delta_arrow": "off"}  # a metric's second line as a plain note
# family: its own widgets
FIELDS = ("task", "checkpoint", "size", "n", "budget", "seed", "difficulty", "precision", "family")

st.title("Explore")
s, entry = settings_sidebar(FIELDS)
if entry is None:
    st.info("No checkpoint to run for this task. Put .safetensors checkpoints in the checkpoints folder "
            "(or set TTC_CHECKPOINTS), or upload one on the Checkpoints page.")
    st.stop()
s, cut = for_run(s, entry)  # this run's share of the user's n (kept in the sidebar and the URL)
if cut:
    st.warning(cut)
cfg = entry.ck.config
run_precision, precision_why = precision_of(entry.ck, s)
if precision_why:
    st.warning(precision_why)
st.caption(f"{entry.name}: {cfg.family} {cfg.arch}, width {cfg.width}, {entry.ck.model.num_params():,} parameters, "
           f"trained at {cfg.layers} {'layers' if entry.ck.model.fixed_depth else 'iterations'}; "
           f"{s.n} {s.task} problems of size {s.size} (seed {s.seed}) on {s.device} in {run_precision}."
           + (" A bf16 run switches to float32 once its residual nears bf16's resolution (0.4%), so residuals and "
              "convergence below 2e-2 are float32 numbers." if run_precision == "bf16" and
              not entry.ck.model.fixed_depth else ""))

b_run, b_stop, prog_col = st.columns([1, 1, 8], vertical_alignment="center")
run_clicked = b_run.button("Run", type="primary", key="explore_run", help="run again from the first iteration")
stop_clicked = b_stop.button("Stop", key="explore_stop", help="stop the run in progress")
progress = prog_col.empty()
metrics_ph = st.empty()
note_ph = st.empty()
curves_ph = st.empty()  # one live figure while running, then three charts with their exports
pins_ph = st.container()  # pin / clear: overlay runs on the charts
series_ph = st.empty()  # the family's extra series (memory slot norms, solver residual), after the run
st.subheader("Example inspector")
insp_ph = st.empty()
front_ph = st.empty()
bundle_ph = st.empty()


def draw_metrics(t: Trace) -> None:
    m = t.summary()
    if not m:
        return
    with metrics_ph.container():
        cols = st.columns(6)
        cols[0].metric("Best accuracy", f"{m['best_accuracy']:.1%}", f"iteration {m['best_iter']}", **PLAIN)
        cols[1].metric("Final accuracy", f"{m['final_accuracy']:.1%}", f"iteration {m['iters']}", **PLAIN)
        cols[2].metric("NFE", f"{m['nfe']:,}")
        cols[3].metric("Wall time", f"{m['seconds']:.2f} s")
        cols[4].metric("Iterations / s", f"{m['iters_per_second']:.1f}")
        cols[5].metric("Converged / diverged", f"{m['converged']} / {m['diverged']}", f"of {s.n}", **PLAIN)


def draw_progress(t: Trace, frames_per_s: float | None = None) -> None:
    live = f" Drawn live at {frames_per_s:.1f} frames/s." if frames_per_s else ""
    if t.stopped:
        text = f"Stopped at iteration {t.iters} of {t.expected}. Press Run to start again."
    elif t.complete:
        text = done_text(t) + live
    else:
        text = f"Running: iteration {t.iters} of {t.expected}"
    progress.progress(min(1.0, t.iters / max(1, t.expected)), text=text)


PIN_MAX = 4  # pinned runs overlaid on Explore's charts


def run_label(t: Trace) -> str:
    """A pinned run's legend entry: its checkpoint and every setting that can differ between runs (size, problems,
    budget, seed, precision and difficulty when set, the family's values), so two pins never share a label."""
    x = t.settings
    extra = "".join(f", {k} {v}" for k, v in x.extra)
    more = (f", {t.precision}" if x.precision != "auto" else "") + (
        f", difficulty {x.difficulty}" if x.difficulty is not None else "")
    return f"{x.checkpoint} (size {x.size}, n {x.n}, budget {x.budget}, seed {x.seed}{more}{extra})"


def figures(t: Trace) -> dict:
    """The three charts of the run, with the pinned runs overlaid and the checkpoint's training depth marked."""
    pinned = st.session_state.get("explore_pins", [])
    runs = [(label, p) for label, p in pinned] + [(s.checkpoint if not pinned else run_label(t), t)]
    figs = {"accuracy": plots.accuracy_figure(runs, bits=not pinned), "residual": plots.residual_figure(runs),
            "memory": plots.memory_figure(runs)}
    if not entry.ck.model.fixed_depth:
        for fig in figs.values():
            plots.add_budget_line(fig, cfg.layers, f"trained at {cfg.layers} iterations")
    return figs


def example(t: Trace, problem: int, k: int):
    ok = bool(t.correct[k - 1, problem])
    conf = float(t.confidence[k - 1, problem])
    title = f"Problem {problem}, iteration {k}: {'right' if ok else 'wrong'}, confidence {conf:.2f}"
    pred = t.preds[k - 1, problem]
    cells = None if t.cell_conf is None else t.cell_conf[k - 1, problem]
    return plots.example_figure(s.task, t.inputs[problem], t.targets[problem], pred, title, confidence=cells)


def draw_live(t: Trace, tag: int, fig) -> None:
    """One live frame: progress, metrics and the run's three-panel figure with t's data (the inspector waits for
    the end)."""
    draw_progress(t)
    draw_metrics(t)
    curves_ph.plotly_chart(fig, key=f"live-{tag}", width="stretch", config={"staticPlot": True})


def run_live() -> tuple[Trace, float | None]:
    """Run with the charts redrawn every DRAW_EVERY seconds; the run object stays in the session so that
    a Stop (which reruns the script and so ends this loop) finds what was computed. Returns the trace and
    the live frames per second (None when the run was too short to measure)."""
    run = LiveRun(entry.ck, s)
    st.session_state["explore_live"] = ((s, entry.version), run)
    insp_ph.caption("The inspector opens when the run ends.")
    last, tag, start, frame = 0.0, 0, time.perf_counter(), 0.0
    live = None
    settling = not st.session_state.get("explore_mounted")
    for _ in run:
        now = time.perf_counter()
        every = FIRST_RUN_EVERY if settling and now - start < FIRST_RUN_SETTLE else DRAW_EVERY
        # measured from the start of the last frame, drawing included; and at least twice the last frame's own
        # time, so that drawing never takes more than half of a run (on a slow or busy machine frames thin out)
        if now - last >= max(every, 2 * frame):
            last = now
            t = run.trace(maps=False)
            if live is None:
                live = plots.LiveFigure(s.checkpoint, t)  # built with t's data
            else:
                live.update(t)
            draw_live(t, tag, live.figure)
            frame = time.perf_counter() - now
            tag += 1
    st.session_state["explore_mounted"] = True
    t = run.trace()
    remember_trace(s, entry, t)
    seconds = time.perf_counter() - start
    return t, (tag / seconds if tag > 2 else None)


@st.fragment
def inspector(t: Trace, key) -> None:
    """Choose a problem and scrub through the iterations (reruns only this fragment)."""
    if st.session_state.get("insp_for") != key:  # a new trace: start at its last iteration
        st.session_state["insp_for"] = key
        st.session_state["insp_k"] = t.iters
        st.session_state["insp_problem"] = 0
    st.session_state["insp_problem"] = min(st.session_state.get("insp_problem", 0), t.shown - 1)
    c1, c2 = st.columns([1, 3])
    problem = c1.selectbox("Problem", list(range(t.shown)), key="insp_problem",
                           format_func=lambda i: f"#{i} ({'right' if t.correct[-1, i] else 'wrong'} at the end)",
                           help=f"the first {t.shown} of the {s.n} problems keep their per-iteration predictions")
    if t.iters > 1:
        st.session_state["insp_k"] = min(max(1, st.session_state.get("insp_k", t.iters)), t.iters)
        k = c2.slider("Iteration", 1, t.iters, key="insp_k")
    else:
        k = 1
    left, right = st.columns([2, 1])
    with left:
        fig = example(t, problem, k)
        chart_with_export(fig, f"{s.checkpoint}-problem{problem}-iter{k}", key="example")
    with right:
        chart_with_export(plots.confidence_figure(t, problem, k), f"{s.checkpoint}-confidence{problem}",
                          key="confidence")
    for figure, names, what, stem in plots.map_views(t):  # the family's views of its per-iteration maps
        if problem < t.maps_shown:
            chart_with_export(figure(t, problem, k, names), f"{s.checkpoint}-{stem}{problem}-iter{k}",
                              key=f"map-{stem}")
        else:
            st.caption(f"{what}: kept for the first {t.maps_shown} problem(s) of this run (the bound on a trace's "
                       "stored maps); choose one of those to see it.")


key = (s, entry.version)
live_key, live_run = st.session_state.get("explore_live", (None, None))
if stop_clicked and live_key == key and live_run.done < live_run.expected:
    live_run.stopped = True
trace, frames_per_s = None, None
if not run_clicked:
    if live_key == key and live_run.stopped:
        trace = live_run.trace()
    elif is_cached(s, entry):
        trace = trace_for(s, entry)


def cost_of(iters: int) -> float:
    """This run's cost in the one cost model for `iters` iterations (what the estimate and its calibration use)."""
    return run_cost(get_task(s.task), s.size, s.n, iters, cfg.width)


@st.fragment(run_every=FIRST_RUN_START_AFTER)
def rerun_once_drawn() -> None:
    """Called by the page, it only arms the browser's timer; called by that timer, it reruns the page (once: the
    rerun does not call it again, and a full run clears the browser's timer)."""
    if st.session_state.get("explore_drawn"):
        st.rerun(scope="app")
    st.session_state["explore_drawn"] = True


if trace is None and not run_clicked:
    iters = entry.ck.model.budget(s.budget)
    estimate = cost_of(iters) / st.session_state.get("explore_rate", COST_PER_SECOND)
    if estimate > AUTO_RUN_SECONDS:  # a costly run opened by a link or a setting waits for Run
        progress.progress(0.0, text=f"Waiting: this run is estimated at about {estimate:.0f} s "
                                    f"({s.n} problems of size {s.size}, {iters} iterations). Press Run to start it.")
        st.info(f"Runs estimated above {AUTO_RUN_SECONDS:.0f} s wait for Run (the estimate comes from this "
                "session's last run, or from this machine's typical speed).")
        st.stop()
    first = not st.session_state.get("explore_mounted") and not st.session_state.get("explore_drawn")
    if first and estimate > FIRST_RUN_SETTLE:  # a session's first long run: the browser starts it (see above)
        progress.progress(0.0, text=f"Starting: this run (about {estimate:.0f} s) begins once the page is drawn.")
        rerun_once_drawn()
        st.stop()
if trace is None:
    trace, frames_per_s = run_live()
    st.session_state["explore_frames"] = (key, frames_per_s)
    if trace.iters and trace.elapsed[-1] > 0.5:  # calibrate the estimate on what this machine just did
        st.session_state["explore_rate"] = cost_of(trace.iters) / float(trace.elapsed[-1])

if frames_per_s is None and st.session_state.get("explore_frames", (None,))[0] == key:
    frames_per_s = st.session_state["explore_frames"][1]  # a redraw of the run this session drew live (a rerun
    # after it, e.g. the browser's on reconnecting) still says how it was drawn
draw_progress(trace, frames_per_s)
draw_metrics(trace)
with note_ph.container():
    st.info(peak_note(trace, s.checkpoint))
    if trace.iters and trace.diverged[-1]:
        st.warning(f"{trace.diverged[-1]} of {s.n} samples diverged (their state turned non-finite or their residual "
                   "blew up): they leave the residual mean and are counted on the residual chart's right axis.")
stem = f"{s.checkpoint}-{s.task}{s.size}-n{s.n}-b{s.budget}-seed{s.seed}" + (
    f"-d{s.difficulty}" if s.difficulty is not None else "")
with curves_ph.container():
    for (name, fig), col in zip(figures(trace).items(), st.columns(3), strict=True):
        with col:
            chart(fig, key=f"final-{name}")
            export_buttons(fig, f"{stem}-{name}", key=f"export-{name}")
if trace.iters and trace.series:
    with series_ph.container():
        st.caption(f"Series the {trace.family} family reports per iteration (mean over the samples, band: 10th to "
                   "90th percentile).")
        for (name, col) in zip(trace.series, st.columns(len(trace.series)), strict=True):
            with col:
                chart_with_export(plots.series_figure(s.checkpoint, trace, name), f"{stem}-{name}",
                                  key=f"series-{name}")
if trace.iters:
    with insp_ph.container():
        inspector(trace, key)
    with front_ph.container():
        st.subheader("The front of the computation")
        st.caption("Output cell against iteration, red where the answer is still wrong: the batch (every problem) "
                   "and the inspector's first problem; below, when each problem became right and stayed right.")
        left, right = st.columns(2)
        with left:
            if trace.pos_error is not None:
                chart_with_export(plots.front_figure(trace), f"{stem}-front", key="front")
            else:
                st.caption("Too many cells x iterations to keep the batch's per-cell errors for this run.")
        with right:
            chart_with_export(plots.front_figure(trace, 0), f"{stem}-front-problem0", key="front_problem")
        if trace.difficulty:
            left, right = st.columns(2)
            with left:
                chart_with_export(plots.settled_figure(trace), f"{stem}-settled", key="settled")
            with right:
                chart_with_export(plots.difficulty_figure(trace), f"{stem}-difficulty", key="difficulty")
            st.caption("Right: each problem's settling iteration against its difficulty (the task's main measure, "
                       "README: Difficulty). The dashed line is the physical limit: a model that moves information "
                       "at most its reach per iteration needs difficulty / reach iterations. Set a difficulty in the "
                       "sidebar to draw every problem at it.")
        else:
            chart_with_export(plots.settled_figure(trace), f"{stem}-settled", key="settled")
pins = st.session_state.setdefault("explore_pins", [])
pin_col, clear_col, pin_note = pins_ph.columns([1, 1, 6], vertical_alignment="center")
if pin_col.button("Pin this run", key="explore_pin", disabled=not trace.iters or len(pins) >= PIN_MAX,
                  help=f"keep this run's curves on the charts while you change the settings (up to {PIN_MAX})"):
    pins.append((run_label(trace), replace(trace, maps={}, pos_error=None)))  # the curves, not the heavy maps
    st.rerun()
if clear_col.button("Clear pins", key="explore_unpin", disabled=not pins):
    pins.clear()
    st.rerun()
train_sizes = entry.ck.train_sizes
pin_note.caption((f"Overlaid: {', '.join(label for label, _ in pins)}. " if pins else "")
                 + (f"{entry.name} trained on sizes {', '.join(map(str, train_sizes))}" if train_sizes else "")
                 + ("" if entry.ck.model.fixed_depth else f" at {cfg.layers} iterations (dotted line)."))
bundle_ph.download_button("Download run bundle (.zip)", key="bundle", on_click="ignore",
                          data=lambda: export.run_bundle(trace, s.checkpoint, entry.weights(), f"{stem}-bundle"),
                          file_name=f"{stem}-bundle.zip", mime="application/zip",
                          help="settings, traces, the problems and the checkpoint; its README.txt gives the "
                               "python -m ttc eval command that replays it from the TTC Lab folder")
if not st.session_state.get("explore_drawn"):  # a session's first page, drawn: the browser draws it once more in
    rerun_once_drawn()  # a second (from the trace cache), which mounts any widget left a placeholder (see the top)
