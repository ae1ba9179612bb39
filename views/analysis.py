"""Fixed points: where iterative refinement stops paying, for one looped checkpoint (python -m ttc analyze).

Path independence (accuracy from several initial states, final-state distances, the AA score), the fixed point
against the best iterate, per-sample halting rules against a fixed budget, and breadth against depth at equal
function evaluations. Drawn as each part completes; every chart exports; the settings and `starts` are in the URL.
"""

import json
from dataclasses import replace

import streamlit as st

from tasks import get_task
from ttc.app import plots
from ttc.app.settings import max_n, precision_of, run_settings_of
from ttc.app.trace import generate_for
from ttc.engine.analyze import MAX_STARTS, analyze, best_halting
from ttc.engine.limits import LIVE_ITER_COST, run_cost
from ttc.engine.probe import MAX_ITERS
from views._common import chart, chart_with_export, settings_sidebar

AUTO_RUN_COST = 100 * LIVE_ITER_COST  # an analysis costing more waits for the Run button
FIELDS = ("task", "checkpoint", "size", "n", "budget", "seed", "difficulty", "precision", "family")

st.title("Fixed points")
raw = st.query_params.get("starts", st.session_state.get("analysis_starts", 5))  # before the sidebar rewrites the URL
s, entry = settings_sidebar(FIELDS)
if entry is None:
    st.info("No checkpoint to analyse for this task. Put .safetensors checkpoints in the checkpoints folder "
            "(or set TTC_CHECKPOINTS), or upload one on the Checkpoints page.")
    st.stop()
if entry.ck.model.fixed_depth:
    st.info(f"{entry.name} is a {entry.ck.family} model: its depth is fixed at {entry.ck.config.layers} layers, so "
            "there is no iteration to analyse. Pick a looped checkpoint (recursive, DEQ, memory ...).")
    st.stop()

# starts: this page's own setting, in the URL beside the shared ones
try:
    asked = int(raw)
except (TypeError, ValueError):
    asked = 5
    st.warning(f"starts={str(raw)[:20]!r} is not an integer; using 5.")
if not 1 <= asked <= MAX_STARTS:
    st.warning(f"starts={asked} is outside 1..{MAX_STARTS}; using {min(max(asked, 1), MAX_STARTS)}.")
    asked = min(max(asked, 1), MAX_STARTS)
if "w_starts" not in st.session_state:
    st.session_state["w_starts"] = asked
starts = int(st.sidebar.number_input("Initial states (starts)", 1, MAX_STARTS, key="w_starts",
                                     help="zeros, Gaussian noise x0.5, x1, x2 (of the zero start's final RMS), other "
                                          "problems' final states, then larger noise"))
if s.budget * starts > MAX_ITERS:
    fit = max(1, MAX_ITERS // s.budget)
    st.warning(f"{starts} starts x {s.budget} iterations exceeds the depth run's limit of {MAX_ITERS}; using {fit}.")
    starts = fit
st.session_state["analysis_starts"] = starts
st.query_params["starts"] = str(starts)

task = get_task(s.task)
n = min(s.n, max_n(entry, s.task, s.size))
total = (2 * starts - 1) * s.budget
cost = run_cost(task, s.size, n, total, entry.ck.config.width)
st.caption(f"{entry.name} ({entry.ck.family}) on {n} {s.task} problems of size {s.size} (seed {s.seed}): a depth run "
           f"of {starts} x {s.budget} iterations from zeros and {starts - 1} more run(s) of {s.budget} from other "
           f"initial states, {total:,} iterations in all." + (f" {n} problems rather than {s.n}, to stay live."
                                                                 if n < s.n else ""))

key = (replace(s, n=n), starts, entry.version)
cache = st.session_state.setdefault("analysis_results", {})
result = cache.get(key)
if result is None:
    clicked = st.button("Run analysis", type="primary", key="analysis_run")
    if cost > AUTO_RUN_COST and not clicked:
        st.info(f"This analysis is costly (about {cost / LIVE_ITER_COST:.0f} live iterations' worth of compute): "
                "press Run analysis to start it.")
        st.stop()
    progress = st.progress(0.0, text="Running the depth run from zeros")
    starts_ph = st.empty()
    done_iters = [0]
    seen: list[dict] = []

    def on_iter(k: int) -> None:
        done_iters[0] += k
        if done_iters[0] % 25 == 0:
            progress.progress(min(1.0, done_iters[0] / total), text=f"iteration {done_iters[0]:,} of {total:,}")

    def on_stage(name: str, part: dict) -> None:
        if name == "start":
            seen.append(part)
            chart(plots.starts_figure(entry.name, seen), key=f"starts-live-{len(seen)}", container=starts_ph)

    x, y = generate_for(replace(s, n=n))
    try:
        result = analyze(entry.ck.model, task, x, y, s.budget, starts=starts, seed=s.seed, device=s.device,
                         settings=run_settings_of(entry.ck, s), on_iter=on_iter, on_stage=on_stage,
                         precision=precision_of(entry.ck, s)[0])
    except (ValueError, RuntimeError) as e:
        st.error(f"The analysis failed: {e}")
        st.stop()
    cache.clear()  # one analysis kept per session: they hold whole curves
    cache[key] = result
    progress.progress(1.0, text=f"done: {total:,} iterations.")
    starts_ph.empty()

stem = f"analysis-{entry.name}-{s.task}{s.size}-n{n}-b{s.budget}-s{starts}-seed{s.seed}"
pi, fp, halting, breadth = (result[k] for k in ("path_independence", "fixed_point_vs_iterate", "halting", "breadth"))

st.subheader("Path independence")
cols = st.columns(4)
cols[0].metric("AA score", f"{pi['aa_score']:.4f}", help="mean cosine similarity of the final states reached from "
               "different starts (Anil et al. 2022); 1: every start ends in the same state")
cols[1].metric("Largest final distance", f"{pi['largest_mean_distance']:.2g}",
               help="relative to the zero start's final state (mean over problems; the largest over starts)")
if "same_fixed_point" in pi:
    cols[2].metric("Same fixed point", "yes" if pi["same_fixed_point"] else "no", help=pi["same_fixed_point_rule"])
left, right = st.columns([3, 2])
with left:
    chart_with_export(plots.starts_figure(entry.name, pi["starts"]), f"{stem}-starts", key="starts")
with right:
    chart_with_export(plots.distances_figure(pi), f"{stem}-distances", key="distances")

st.subheader("The fixed point against the best iterate")
cols = st.columns(4)
cols[0].metric(f"At iteration {fp['iters']}", f"{fp['fixed_point_accuracy']:.1%}",
               help=f"{fp['settled_fraction']:.0%} of the samples settled (state change below 1e-4 or solver "
                    "converged)")
cols[1].metric("Best iterate", f"{fp['best_iterate_accuracy']:.1%}", f"iteration {fp['best_iter']}",
               delta_color="off", delta_arrow="off")
cols[2].metric("Right at some iteration", f"{fp['oracle_any_iterate_accuracy']:.1%}",
               help="an oracle that stops each sample where it is right")
cols[3].metric("Best iterate beats the end", f"{fp['best_iterate_beats_fixed_point']:.1%}",
               help="samples right at some iteration but wrong at the end")

st.subheader("Halting and breadth")
left, right = st.columns(2)
with left:
    chart_with_export(plots.halting_figure(entry.name, halting), f"{stem}-halting", key="halting")
with right:
    chart_with_export(plots.breadth_figure(entry.name, breadth), f"{stem}-breadth", key="breadth")
best = best_halting(result)  # within a point of the best iterate
if best is not None:
    st.markdown(f"- Halting by **{best['rule']} {best['value']:g}** keeps {best['accuracy']:.1%} accuracy at "
                f"{best['mean_nfe']:.1f} NFE per problem on average: {best['compute_saved']:.0%} less than the fixed "
                f"budget needs for the same accuracy ({best['fixed_budget_for_same_accuracy']} iterations).")
else:
    st.markdown("- No halting rule keeps the accuracy within a point of the best iterate here.")
last = breadth["points"][-1]
verdict = "beats" if last["breadth_accuracy"] > last["depth_accuracy"] else (
    "ties" if last["breadth_accuracy"] == last["depth_accuracy"] else "loses to")
st.markdown(f"- Breadth: the best of {last['starts']} starts ({last['nfe']} NFE) reaches "
            f"{last['breadth_accuracy']:.1%}; one run spending the same NFE reaches {last['depth_accuracy']:.1%}: "
            "breadth "
            f"{verdict} depth here. The oracle (any start right) would reach {last['oracle_accuracy']:.1%}.")
au = breadth.get("verifier_auroc")
st.markdown(f"- The verifier ({breadth['verifier']}) separates right from wrong final answers with AUROC "
            + (f"**{au:.3f}**" if au is not None else "undefined (every final answer right, or every one wrong)")
            + f" over {breadth.get('verifier_n', 0)} answers ({breadth.get('verifier_right', 0)} right); "
            "0.5 is chance.")
st.download_button("Download the analysis (.json)", data=json.dumps(result, indent=1),
                   file_name=f"{stem}.json", mime="application/json", key="analysis_json", on_click="ignore")
