"""Compare: the same problems through every checkpoint of the task (accuracy vs iterations and vs wall
time), an extrapolation heat map of one checkpoint (problem size x iterations), and where each peaks."""

from dataclasses import replace

import numpy as np
import streamlit as st

from ttc.app import plots
from ttc.app.settings import max_n, size_ladder, sweep_sizes, with_checkpoint
from ttc.app.trace import peak_note
from views._common import chart, chart_with_export, entries, settings_sidebar, trace_for

st.title("Compare")
# the extrapolation map's own settings, in the URL beside the shared ones (read before the sidebar rewrites it)
linked = {k: st.query_params.get(k) for k in ("heat_checkpoint", "heat_sizes") if k in st.query_params}
s, entry = settings_sidebar(("task", "checkpoint", "size", "n", "budget", "seed", "difficulty", "precision"))
models = [e for e in entries() if e.ok and e.task == s.task]
if not models:
    st.info(f"No checkpoint for {s.task} to compare: add some to the checkpoints folder or upload them on the "
            "Checkpoints page.")
    st.stop()

# one batch for all: as many problems as the most expensive checkpoint may run live
n = min([s.n] + [max_n(e, s.task, s.size) for e in models])
runs = [(e, with_checkpoint(replace(s, n=n), e)) for e in models]
st.caption(f"{len(models)} checkpoints of {s.task} on the same {n} problems of size {s.size} (seed {s.seed}), "
           f"budget {s.budget}; explicit models run their fixed depth. DEQs use their own solver settings."
           + (f" {n} problems rather than {s.n}, so the widest model stays live." if n < s.n else ""))

st.subheader("Accuracy")
progress = st.progress(0.0)
left, right = st.columns(2)
it_ph, time_ph = left.empty(), right.empty()
notes_ph = st.empty()
done = []
for i, (e, rs) in enumerate(runs):
    progress.progress(i / len(runs), text=f"Running {e.name} ({i + 1} of {len(runs)})")
    done.append((e.name, trace_for(rs, e)))
    chart(plots.accuracy_figure(done), key=f"cmp-it-{i}", container=it_ph)
    chart(plots.accuracy_figure(done, x="seconds"), key=f"cmp-time-{i}", container=time_ph)
progress.progress(1.0, text=f"{len(runs)} checkpoints done.")
stem = f"compare-{s.task}{s.size}-n{n}-b{s.budget}-seed{s.seed}"
with it_ph.container():
    chart_with_export(plots.accuracy_figure(done), f"{stem}-accuracy-iterations", key="cmp-it")
with time_ph.container():
    chart_with_export(plots.accuracy_figure(done, x="seconds"), f"{stem}-accuracy-time", key="cmp-time")
notes_ph.markdown("\n".join(f"- {peak_note(t, name)}" for name, t in done))

measured = [(name, t) for name, t in done if t.difficulty and t.iters]
if measured:
    measure = next(iter(measured[0][1].difficulty))
    st.subheader("Accuracy against difficulty")
    st.caption(f"The same problems grouped by their {measure} (README: Difficulty), accuracy at the end of each "
               "run with 95% Wilson bands (n: the smallest group). Leave the sidebar's difficulty empty for problems "
               "of every difficulty, or raise the size for harder ones.")
    rows_d = [(name, t.family, np.asarray(t.difficulty[measure]), t.correct[-1]) for name, t in measured]
    chart_with_export(plots.accuracy_by_difficulty_figure(rows_d, s.budget, measure), f"{stem}-difficulty",
                      key="cmp-difficulty")

st.subheader("Extrapolation")
c1, c2 = st.columns([1, 2])
names = [e.name for e in models]
if linked.get("heat_checkpoint") in names and f"heat_checkpoint_{s.task}" not in st.session_state:
    st.session_state[f"heat_checkpoint_{s.task}"] = linked["heat_checkpoint"]
if linked.get("heat_sizes") and f"heat_sizes_{s.task}" not in st.session_state:
    ladder = set(size_ladder(s.task)) | {s.size}
    try:
        asked = [int(v) for v in str(linked["heat_sizes"]).split(",") if v.strip()]
    except ValueError:
        asked = []
    ok = sorted(v for v in asked if v in ladder)
    if ok:
        st.session_state[f"heat_sizes_{s.task}"] = ok
    else:
        st.warning(f"heat_sizes={str(linked['heat_sizes'])[:30]!r} names no size of the ladder; using the default.")
heat_name = c1.selectbox("Checkpoint", names, index=names.index(entry.name), key=f"heat_checkpoint_{s.task}")
heat_entry = next(e for e in models if e.name == heat_name)
picked = st.session_state.get(f"heat_sizes_{s.task}", [])
options = sorted(set(size_ladder(s.task)) | {s.size} | set(picked))
sizes = sorted(c2.multiselect("Problem sizes", options, default=sweep_sizes(s.task, s.size),
                              key=f"heat_sizes_{s.task}"))
st.query_params.update({"heat_checkpoint": heat_name, "heat_sizes": ",".join(map(str, sizes))})
if not sizes:
    st.info("Pick at least one problem size.")
    st.stop()
heat_progress = st.progress(0.0)
heat_ph = st.empty()
rows: list = [None] * len(sizes)
for j, size in enumerate(sizes):
    heat_progress.progress(j / len(sizes), text=f"{heat_name}: size {size} ({j + 1} of {len(sizes)})")
    rows[j] = trace_for(with_checkpoint(replace(s, size=size), heat_entry), heat_entry).accuracy
    chart(plots.heatmap_figure(heat_name, sizes, rows, s.budget), key=f"heat-{j}", container=heat_ph)
heat_progress.progress(1.0, text=f"{len(sizes)} sizes done (up to {s.n} problems each, fewer where a size is costly).")
with heat_ph.container():
    chart_with_export(plots.heatmap_figure(heat_name, sizes, rows, s.budget),
                      f"extrapolation-{heat_name}-b{s.budget}-seed{s.seed}", key="heat")
