"""Exports: figures as PNG/SVG (kaleido with a system Chromium), standalone HTML, their data as CSV and
JSON, and run bundles that `python -m ttc eval` replays.

PNG and SVG need a Chromium: `$BROWSER_PATH` when it names an executable, else the first of the usual
names on PATH. Without one, `static_export_status()` says why and the other formats still work.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shlex
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from models import get_family
from tasks import save_npz
from ttc.app.plots import fit_legend
from ttc.app.trace import Trace, generate_for

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
STATIC_FORMATS = ("png", "svg")
# kaleido's Chromium (about 1 GiB) is started by the first PNG/SVG export and stopped once no export has used it
# for this long: a server that exported one figure does not keep a browser for the rest of its life
KALEIDO_IDLE_SECONDS = float(os.environ.get("TTC_KALEIDO_IDLE_SECONDS", "60"))
_lock = threading.Lock()
_server = {"started": False, "last_use": 0.0, "timer": None, "atexit": False}


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome to render static images with, or None."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file() and os.access(env, os.X_OK):
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def static_export_status() -> tuple[bool, str]:
    """(available, reason): whether PNG/SVG export can run here, and a sentence saying why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False, "PNG/SVG export needs the kaleido package (pip install kaleido)."
    if find_chromium() is None:
        return False, ("PNG/SVG export needs a Chromium: install one (e.g. apt-get install chromium) or set "
                       "BROWSER_PATH to a Chrome/Chromium executable. HTML, CSV and JSON work without it.")
    return True, ""


def _stop_server() -> None:
    import kaleido

    with _lock:
        if _server["started"]:
            kaleido.stop_sync_server(silence_warnings=True)
            _server["started"] = False


def _stop_when_idle() -> None:
    """The idle timer: stop the browser if no export used it for KALEIDO_IDLE_SECONDS, else wait the rest."""
    with _lock:
        _server["timer"] = None
        left = _server["last_use"] + KALEIDO_IDLE_SECONDS - time.monotonic()
        if left > 0 and _server["started"]:
            _arm_idle_timer(left)
            return
    _stop_server()


def _arm_idle_timer(seconds: float) -> None:
    timer = threading.Timer(seconds, _stop_when_idle)
    timer.daemon = True
    _server["timer"] = timer
    timer.start()


def stop_static_server() -> None:
    """Stop kaleido's browser now (if running) and forget its idle timer."""
    with _lock:
        timer, _server["timer"] = _server["timer"], None
    if timer is not None:
        timer.cancel()
    _stop_server()


def static_server_running() -> bool:
    """Whether kaleido's browser is running now (started by an export, not yet stopped as idle)."""
    return bool(_server["started"])


def to_image(fig: go.Figure, fmt: str, scale: float = 2.0) -> bytes:
    """The figure as PNG or SVG bytes, through one long-lived kaleido browser shared by all callers."""
    if fmt not in STATIC_FORMATS:
        raise ValueError(f"static format must be one of {', '.join(STATIC_FORMATS)}, got {fmt!r}")
    ok, why = static_export_status()
    if not ok:
        raise RuntimeError(why)
    import kaleido
    import plotly.io as pio

    os.environ.setdefault("BROWSER_PATH", find_chromium())
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotly warns that its per-call options are unused with a server
        if not _server["started"]:
            kaleido.start_sync_server(silence_warnings=True)
            _server["started"] = True
            if not _server["atexit"]:
                atexit.register(_stop_server)
                _server["atexit"] = True
        _server["last_use"] = time.monotonic()
        if _server["timer"] is None:
            _arm_idle_timer(KALEIDO_IDLE_SECONDS)
        return pio.to_image(fit_legend(fig), format=fmt, scale=scale if fmt == "png" else 1)


def to_html(fig: go.Figure) -> str:
    """A standalone HTML page (plotly.js inlined: it opens offline)."""
    return fit_legend(fig).to_html(include_plotlyjs=True, full_html=True)


def _plain(v):
    """Plotly's tuples/arrays as nested lists of plain numbers and strings, NaN as None (strict JSON). A number
    computed in float32 is written as its shortest float32 form (0.01, not 0.009999999776482582)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(u) for u in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        if not np.isfinite(v):
            return None
        f32 = np.float32(v) if abs(v) < 3e38 else None  # beyond float32's range it cannot have been one
        if f32 is not None and float(f32) == v:  # exactly a float32: its shortest decimal is the honest one
            return float(np.format_float_positional(f32, unique=True))
    return v


def figure_data(fig: go.Figure) -> dict:
    """The numbers behind a figure: title, axis titles and each trace's name and x/y(/z) values."""
    lay = fig.layout
    out = {"title": lay.title.text, "x_title": lay.xaxis.title.text, "y_title": lay.yaxis.title.text, "traces": []}
    for tr in fig.data:
        d = {"name": tr.name, "type": tr.type}
        for axis in ("x", "y", "z"):
            if axis == "z" and tr.type == "image":
                continue
            v = getattr(tr, axis, None)
            if v is not None:
                d[axis] = _plain(v)
        out["traces"].append(d)
    return out


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The figure's data as one long table: a row per point (trace, x, y) or heat-map cell (trace, x, y, z). A
    legend-only trace (a point at (None, None): a colour key, the training depth's line) has no rows."""
    rows = []
    for tr in figure_data(fig)["traces"]:
        if "z" in tr:
            z, xs, ys = tr["z"], tr.get("x") or [], tr.get("y") or []
            for i, row in enumerate(z):
                for j, v in enumerate(row):
                    rows.append({"trace": tr["name"], "x": xs[j] if j < len(xs) else j,
                                 "y": ys[i] if i < len(ys) else i, "z": v})
        else:
            for x, y in zip(tr.get("x", []), tr.get("y", []), strict=True):
                if x is not None or y is not None:
                    rows.append({"trace": tr["name"], "x": x, "y": y})
    return pd.DataFrame(rows)


def to_csv(fig: go.Figure) -> str:
    return figure_table(fig).to_csv(index=False)


def to_json(fig: go.Figure) -> str:
    return json.dumps(figure_data(fig), indent=1, allow_nan=False)


def replay_args(t: Trace, checkpoint_file: str, data_file: str) -> list[str]:
    """`python -m ttc eval` arguments that recompute the trace's accuracy and residual curves."""
    s = t.settings
    args = ["eval", "--checkpoint", checkpoint_file, "--data", data_file, "--iters", str(s.budget),
            "--batch", str(s.n), "--device", s.device, "--precision", t.precision, "--json"]
    return args + settings_args(t.family, dict(s.extra))


def settings_args(family: str, values: dict) -> list[str]:
    """The eval flags that give a run the family settings its widget values mean: each widget's own flag
    (DEQ: --solver, --tol), and --option KEY=JSON for any other setting that differs from the family's default
    (DEQ damping: --option options='{"beta": 0.5}')."""
    if not values:
        return []
    fam = get_family(family)
    settings = fam.settings_from_widgets(values).to_dict()
    defaults = fam.Settings().to_dict()
    args, covered = [], set()
    for w in fam.widgets():
        if w.cli and w.field:
            v = settings[w.field]
            args += [w.cli, f"{v:g}" if isinstance(v, float) else str(v)]
            covered.add(w.field)
    for key, v in settings.items():
        if key not in covered and v != defaults.get(key):
            v = dict(v) if isinstance(v, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in v) else v
            args += ["--option", f"{key}={json.dumps(v)}"]
    return args


class _Readable:
    """ZipFile.writestr with the files readable by everyone once unzipped (mode 0644; writestr's default is
    0600), the same for every file of the bundle."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf

    def writestr(self, name: str, data) -> None:
        info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self.zf.writestr(info, data)


def run_bundle(t: Trace, checkpoint_name: str, checkpoint_bytes: bytes, folder: str = "ttc-run") -> bytes:
    """A zip whose one folder holds the settings, the trace (eval JSON contract and extra curves), the problems
    as .npz, the checkpoint, and README.txt with the command that replays it from the TTC Lab folder."""
    s = t.settings
    ck_file, data_file = f"{folder}/{checkpoint_name}.safetensors", f"{folder}/problems.npz"
    x, y = generate_for(s)
    with tempfile.TemporaryDirectory() as tmp:
        save_npz(Path(tmp) / "problems.npz", s.task, s.size, x, y)
        npz = (Path(tmp) / "problems.npz").read_bytes()
    cmd = "python -m ttc " + " ".join(shlex.quote(a) for a in replay_args(t, ck_file, data_file))
    notes = [f"TTC Lab run bundle: {checkpoint_name} on {s.task} size {s.size}, {s.n} problems (seed {s.seed}), "
             f"budget {s.budget}, computed in {t.precision}.", "",
             "Unzip it in the TTC Lab folder (where python -m ttc runs) and replay:",
             "", f"    {cmd}", "",
             "trace.json follows the eval contract (accuracy, residual, nfe, seconds) and adds the dashboard's "
             "curves; settings.json holds the dashboard settings."]
    if t.stopped or not t.complete:
        notes += ["", f"Note: the run was stopped after {t.iters} of {t.expected} iterations; the replay runs the "
                  "whole budget."]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        z = _Readable(zf)
        z.writestr(f"{folder}/settings.json",
                   json.dumps({**s.__dict__, "precision_run": t.precision, "checkpoint_file": ck_file,
                               "replay": cmd}, indent=1))
        z.writestr(f"{folder}/trace.json", json.dumps(t.eval_json()))
        z.writestr(data_file, npz)
        z.writestr(ck_file, checkpoint_bytes)
        z.writestr(f"{folder}/README.txt", "\n".join(notes) + "\n")
    return buf.getvalue()
