"""Memory: training memory vs iteration count for unrolled backprop against what a family offers instead (a DEQ's
implicit differentiation and Jacobian-free backprop, an EBM's last-step-only descent): bytes autograd saves, on CUDA
the allocator's peak too, with the ratios."""

import pandas as pd
import streamlit as st

from models import UNROLLED
from ttc.app import memory_sweep as ms
from ttc.app import plots
from views._common import chart, chart_with_export, entries, settings_sidebar

st.title("Memory")
# this page's own settings, in the URL beside the shared ones (read before the sidebar rewrites the URL)
PAGE_KEYS = ("mem_checkpoint", "mem_iters", "mem_modes", "mem_batch")
linked = {k: st.query_params.get(k) for k in PAGE_KEYS if k in st.query_params}
s, entry = settings_sidebar(("task", "size", "seed"))


def _csv_ints(raw: str | None, allowed: list[int]) -> list[int] | None:
    try:
        vals = [int(v) for v in str(raw).split(",") if v.strip()]
    except ValueError:
        return None
    return [v for v in vals if v in allowed] or None
deqs = [e for e in entries() if e.ok and e.task == s.task and e.ck.model.memory_modes]
if not deqs:
    st.info(f"No checkpoint for {s.task} of a family that declares training-memory modes (the shipped DEQs and "
            "EBMs do; a plugin family may): those modes are what this page compares.")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=512)
def measured(version: str, size: int, batch: int, seed: int, mode: str, iters: int, device: str, _ck) -> dict:
    return ms.measure_one(_ck, size, batch, seed, mode, iters, device)


@st.cache_data(show_spinner=False, max_entries=64)
def unrolled_limit(version: str, size: int, batch: int, seed: int, iters: tuple, device: str, _ck) -> int | None:
    return ms.unrolled_limit(_ck, size, batch, seed, list(iters), device)


names = [e.name for e in deqs]
if linked.get("mem_checkpoint") in names and f"mem_checkpoint_{s.task}" not in st.session_state:
    st.session_state[f"mem_checkpoint_{s.task}"] = linked["mem_checkpoint"]
if "mem_iters" not in st.session_state and linked.get("mem_iters"):
    got = _csv_ints(linked["mem_iters"], list(ms.ITERS_OPTIONS))
    if got is None:
        st.warning(f"mem_iters={str(linked['mem_iters'])[:30]!r} names none of {list(ms.ITERS_OPTIONS)}; using the "
                   "default counts.")
    else:
        st.session_state["mem_iters"] = got
if "mem_batch" not in st.session_state and linked.get("mem_batch"):
    try:
        st.session_state["mem_batch"] = min(max(int(linked["mem_batch"]), 1), ms.BATCH_MAX)
    except ValueError:
        st.warning(f"mem_batch={str(linked['mem_batch'])[:20]!r} is not an integer; using 8.")
c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
name = c1.selectbox("Checkpoint (its family declares memory modes)", names,
                    index=names.index(entry.name) if entry and entry.name in names else 0,
                    key=f"mem_checkpoint_{s.task}")
ck_entry = next(e for e in deqs if e.name == name)
iters = sorted(c2.multiselect("Iteration counts", ms.ITERS_OPTIONS, default=ms.DEFAULT_ITERS, key="mem_iters"))
own = list(ck_entry.ck.model.memory_modes)
mode_key = f"mem_modes_{ck_entry.ck.family}"
if not st.session_state.get("mem_link_read") and linked.get("mem_modes"):  # a link's modes, on its first view only
    st.session_state[mode_key] = [m for m in str(linked["mem_modes"]).split(",") if m in own] or own
st.session_state["mem_link_read"] = True
chosen = c3.multiselect("Modes", own, default=own, key=f"mem_modes_{ck_entry.ck.family}",
                        help=ck_entry.ck.model.memory_caption or None)
modes = [m for m in own if m in chosen]
st.session_state.setdefault("mem_batch", 8)
batch = c4.number_input("Batch", 1, ms.BATCH_MAX, key="mem_batch")
st.query_params.update({"mem_checkpoint": name, "mem_iters": ",".join(map(str, iters)),
                        "mem_modes": ",".join(chosen), "mem_batch": str(batch)})
if not iters or not modes:
    st.info("Pick at least one iteration count and one mode.")
    st.stop()
gpu = "The GPU peak comes from torch.cuda." if s.device == "cuda" else "On a CUDA GPU the allocator's peak shows too."
st.caption(f"One training step (forward, loss, backward) of {name} on {batch} {s.task} problems of size {s.size} "
           f"(seed {s.seed}) on {s.device}. {ck_entry.ck.model.memory_caption} Saved bytes are the distinct storages "
           f"autograd keeps for backward, parameters and inputs excluded. {gpu}")

args = (ck_entry.version, s.size, batch, s.seed)
jobs = [(m, k) for m in modes for k in iters]
if UNROLLED in modes:
    limit = unrolled_limit(*args, tuple(iters), s.device, ck_entry.ck)
    too_big = [k for k in iters if limit is None or k > limit]
    if too_big:
        st.warning(f"Unrolled backprop at {', '.join(map(str, too_big))} iterations would need more memory than this "
                   "machine can spare; those points are left out.")
        jobs = [(m, k) for m, k in jobs if not (m == UNROLLED and k in too_big)]

progress = st.progress(0.0)
saved_ph, peak_ph = st.empty(), st.empty()
rows = []
for i, (mode, k) in enumerate(jobs):
    progress.progress(i / len(jobs), text=f"Measuring {mode} at {k} iterations ({i + 1} of {len(jobs)})")
    rows.append(measured(*args, mode, k, s.device, ck_entry.ck))
    chart(plots.memory_modes_figure(rows), key=f"mem-live-{i}", container=saved_ph)
progress.progress(1.0, text=f"{len(jobs)} measurements done.")
stem = f"memory-{name}-{s.task}{s.size}-batch{batch}"
with saved_ph.container():
    chart_with_export(plots.memory_modes_figure(rows), f"{stem}-saved", key="mem-saved")
notes = ms.ratio_notes(rows)
if any(r["peak_bytes"] is not None for r in rows):
    with peak_ph.container():
        chart_with_export(plots.memory_modes_figure(rows, key="peak_bytes"), f"{stem}-cuda-peak", key="mem-peak")
    notes += [f"GPU peak, {n}" for n in ms.ratio_notes(rows, key="peak_bytes")]
st.markdown("\n".join(f"- {n}" for n in notes) or "Measure unrolled and another mode to see the ratios.")
table = pd.DataFrame(rows)
for col in ("saved_bytes", "peak_bytes", "baseline_bytes"):
    if col in table:
        if table[col].isna().all():  # on the CPU there is no allocator peak: no empty column
            table = table.drop(columns=col)
        else:
            table[col.replace("_bytes", " (MiB)")] = (table.pop(col) / 2**20).round(3)
st.dataframe(table, hide_index=True, width="stretch")
st.caption("MiB = 2^20 bytes. Saved: the bytes autograd keeps for backward in one training step"
           + ("" if any(r.get("peak_bytes") is not None for r in rows)
              else "; the GPU allocator's peak appears here on CUDA only."))
