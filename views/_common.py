"""Streamlit glue shared by the pages (not a page itself): cached loaders, the shared settings bound to
the URL, charts with their export buttons. The work itself lives in ttc/."""

from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from tasks import TASKS, get_task, optional
from ttc.app import catalog, export, plots
from ttc.app.catalog import Entry
from ttc.app.settings import (
    BUDGET_MAX,
    N_MAX,
    PRECISIONS,
    SEED_MAX,
    RunSettings,
    describe_precision,
    family_widgets,
    query_keys,
    sanitize,
)
from ttc.app.trace import Trace, compute_trace
from ttc.engine.checkpoint import Checkpoint, CheckpointError
from ttc.engine.limits import MAX_SESSION_UPLOADS
from ttc.engine.probe import resolve_device

UPLOADS = "uploads"  # session_state: name -> Entry of the checkpoints this session uploaded


@st.cache_resource(show_spinner=False, max_entries=256)
def _file_entry(stamp: catalog.FileStamp) -> Entry:
    return catalog.load_file_entry(stamp)


def entries() -> list[Entry]:
    """Every checkpoint of this session: the folder's files (validated once per file version), then uploads."""
    out = [_file_entry(s) for s in catalog.file_stamps()]
    return out + list(st.session_state.get(UPLOADS, {}).values())


def add_upload(filename: str, data: bytes) -> Entry:
    """Validate an upload and keep it for this session only; raises CheckpointError with the reason."""
    if len(st.session_state.get(UPLOADS, {})) >= MAX_SESSION_UPLOADS:
        raise CheckpointError(f"this session already holds {MAX_SESSION_UPLOADS} uploaded checkpoints, the most one "
                              "session keeps; reload the page to start a fresh session")
    e = catalog.load_upload_entry(filename, data)
    taken = {x.name for x in entries() if x.source == "file"}
    if e.name in taken:
        e.name = f"{e.name} (uploaded)"
    st.session_state.setdefault(UPLOADS, {})[e.name] = e
    return e


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_trace(settings: RunSettings, version: str, _ck: Checkpoint, _fresh: Trace | None = None) -> Trace:
    return _fresh if _fresh is not None else compute_trace(_ck, settings)


@st.cache_resource(show_spinner=False)
def _done() -> set:
    """(settings, version) pairs whose trace has been put in the trace cache, across sessions."""
    return set()


def trace_for(settings: RunSettings, e: Entry) -> Trace:
    """The complete trace for settings through e, from the cache (computed on the first request)."""
    t = _cached_trace(settings, e.version, e.ck)
    _done().add((settings, e.version))
    return t


def remember_trace(settings: RunSettings, e: Entry, t: Trace) -> None:
    """Put a trace computed live into the cache, so the next request for these settings draws at once."""
    _cached_trace(settings, e.version, e.ck, _fresh=t)
    _done().add((settings, e.version))


def is_cached(settings: RunSettings, e: Entry) -> bool:
    """Whether a request for these settings would be served from the cache (not computed again)."""
    return (settings, e.version) in _done()


def device() -> str:
    return resolve_device(None).type


# --- settings shared by every page and written to the URL ------------------------------------------------

def _raw_settings() -> dict:
    """The last settings of this session, or (on its first run) the link's query parameters."""
    if "settings" not in st.session_state:
        raw = {k: st.query_params.get(k) for k in query_keys() if k in st.query_params}
        s, warns = sanitize(raw, entries(), device(), cap_n=False)
        st.session_state["settings"] = asdict(s)
        st.session_state["url_warnings"] = warns
        st.session_state["url_warnings_for"] = asdict(s)
    return dict(st.session_state["settings"])


def _seed_widget(key: str, value) -> None:
    """Make the widget show value on this run (set before the widget is created). Always set, even when the
    stored value is the same: a widget on another page has another identity, and an unset one would start
    at its default."""
    st.session_state[key] = value


def settings_sidebar(fields: tuple[str, ...]) -> tuple[RunSettings, Entry | None]:
    """Sidebar widgets for the page's fields, checked by ttc.app.settings.sanitize; the result goes to the URL.

    The field "family" stands for the checkpoint family's own widgets, which the family class describes
    (models.base.Widget; DEQ: solver, tolerance, damping). Warnings say what a link or a widget asked for that
    could not be used, and what is used instead.
    """
    raw = _raw_settings()
    raw.update(dict(raw.pop("extra", ()) or ()))  # the stored family values, by widget key
    task = raw["task"]
    keys = [f for f in fields if f != "family"] + (list(family_widgets()) if "family" in fields else [])
    for f in keys:  # the widgets' current values win over the stored ones
        if f"w_{f}" in st.session_state:
            raw[f] = st.session_state[f"w_{f}"]
    if raw["task"] != task:  # the task was just changed: its checkpoint and size start from its defaults
        for f in ("checkpoint", "size", "difficulty", *family_widgets()):
            raw.pop(f, None)
    ents = entries()
    s, warns = sanitize(raw, ents, device(), cap_n=False)
    # what a link asked for that could not be used stays said until the settings change (a run's rerun keeps it)
    if st.session_state.get("url_warnings_for") == asdict(s):
        warns = st.session_state.get("url_warnings", []) + warns
    else:
        st.session_state.pop("url_warnings", None)
        st.session_state.pop("url_warnings_for", None)
    entry = next((e for e in ents if e.ok and e.name == s.checkpoint), None)
    sb = st.sidebar
    sb.header("Settings")
    if "task" in fields:
        _seed_widget("w_task", s.task)
        sb.selectbox("Task", list(TASKS), key="w_task")
    if "checkpoint" in fields:
        names = [e.name for e in ents if e.ok and e.task == s.task]
        if names:
            _seed_widget("w_checkpoint", s.checkpoint)
            sb.selectbox("Checkpoint", names, key="w_checkpoint")
        else:
            sb.info(f"No checkpoint for {s.task} yet: train one (python -m ttc train) or upload one on the "
                    "Checkpoints page.")
    r = get_task(s.task).sizes
    if "size" in fields:
        _seed_widget("w_size", s.size)
        label = optional(get_task(s.task), "size_label")
        sb.number_input(f"{label[:1].upper()}{label[1:]} ({r.describe()})", min_value=r.lo, max_value=r.hi,
                        step=2 if r.odd_only else 1, key="w_size")
    if "n" in fields:
        _seed_widget("w_n", s.n)
        sb.number_input("Problems", min_value=1, max_value=N_MAX, key="w_n")
    if "budget" in fields:
        _seed_widget("w_budget", s.budget)
        train = entry.ck.config.layers if entry else None
        sb.slider("Iteration budget", 1, BUDGET_MAX, key="w_budget",
                  help=f"trained at {train} iterations" if train else None)
    if "seed" in fields:
        _seed_widget("w_seed", s.seed)
        sb.number_input("Seed", min_value=0, max_value=SEED_MAX, key="w_seed")
    if "difficulty" in fields and optional(get_task(s.task), "difficulty_range") is not None:
        lo, hi = get_task(s.task).difficulty_range(s.size)
        _seed_widget("w_difficulty", s.difficulty)
        sb.number_input(f"Difficulty ({get_task(s.task).difficulty_names[0]}, {lo}..{hi}; empty: random)",
                        min_value=lo, max_value=hi, value=None, step=1, key="w_difficulty",
                        placeholder="random", help=optional(get_task(s.task), "difficulty_help") or None)
    if "precision" in fields:
        _seed_widget("w_precision", s.precision)
        sb.selectbox("Precision", list(PRECISIONS), key="w_precision",
                     help="the cores' compute precision: auto picks bf16 where this machine runs it fast (here: "
                          f"{describe_precision(device())}), unless the checkpoint's card says fp32")
    if "family" in fields and entry is not None:
        family_sidebar(sb, type(entry.ck.model), s)
    st.session_state["settings"] = asdict(s)
    query = {k: v for k, v in s.to_query().items() if k in keys}
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    for w in warns:
        st.warning(w)
    return s, entry


def family_sidebar(sb, fam, s: RunSettings) -> None:
    """The checkpoint family's own widgets, drawn from their description (the page knows no family)."""
    values = dict(s.extra)
    for w in fam.active_widgets(values):
        key = f"w_{w.key}"
        _seed_widget(key, values.get(w.key, w.default))
        if w.kind == "select" and all(isinstance(c, str) for c in w.choices):
            sb.selectbox(w.label, list(w.choices), key=key, help=w.help or None)
        elif w.kind == "select":
            sb.select_slider(w.label, options=list(w.choices), key=key, format_func=lambda t: f"{t:g}",
                             help=w.help or None)
        else:
            sb.slider(w.label, float(w.lo), float(w.hi), step=0.05, key=key, help=w.help or None)


# --- charts and exports ---------------------------------------------------------------------------------

def chart(fig, key: str, container=None) -> None:
    """A plotly chart, its legend below it one entry a line (the charts share a row with others, so they are
    narrow); for live updates, give each draw its own key."""
    plots.fit_legend(fig)
    (container or st).plotly_chart(fig, key=key, width="stretch", config={"displaylogo": False})


EXPORT_LABELS = {"png": "PNG image", "svg": "SVG image"}


def export_buttons(fig, name: str, key: str) -> None:
    """PNG, SVG, HTML, CSV and JSON downloads of one figure, each built only when clicked; one button per line
    with its full label (five columns in the popover cut them to "H...")."""
    ok, why = export.static_export_status()
    with st.popover("Export", width="content"):
        for fmt in export.STATIC_FORMATS:
            st.download_button(EXPORT_LABELS.get(fmt, fmt.upper()), data=lambda f=fmt: export.to_image(fig, f),
                               file_name=f"{name}.{fmt}", mime="image/png" if fmt == "png" else "image/svg+xml",
                               key=f"{key}-{fmt}", on_click="ignore", disabled=not ok, help=why or None,
                               width="stretch")
        st.download_button("HTML (interactive)", data=lambda: export.to_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"{key}-html", on_click="ignore", width="stretch")
        st.download_button("CSV (the curves' data)", data=lambda: export.to_csv(fig), file_name=f"{name}.csv",
                           mime="text/csv", key=f"{key}-csv", on_click="ignore", width="stretch")
        st.download_button("JSON (the plotly figure)", data=lambda: export.to_json(fig), file_name=f"{name}.json",
                           mime="application/json", key=f"{key}-json", on_click="ignore", width="stretch")
        if not ok:
            st.caption(why)


def chart_with_export(fig, name: str, key: str) -> None:
    chart(fig, key)
    export_buttons(fig, name, key=f"export-{key}")


def upload_error(e: Exception) -> str:
    return str(e) if isinstance(e, (CheckpointError, ValueError)) else f"{type(e).__name__}: {e}"
