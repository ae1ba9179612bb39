"""The dashboard's engine side, without Streamlit: settings from links, traces, notes, exports, bundles."""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from tests.dashboard_checkpoints import make_checkpoints
from ttc.app import catalog, export, plots
from ttc.app.memory_sweep import measure_one, ratio_notes
from ttc.app.settings import (
    BUDGET_MAX,
    N_MAX,
    RunSettings,
    dashboard_threads,
    for_run,
    sanitize,
    sweep_sizes,
    with_checkpoint,
)
from ttc.app.trace import LiveRun, Trace, compute_trace, peak_note
from ttc.engine.checkpoint import CheckpointError
from ttc.tools.cli import main as cli_main


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    make_checkpoints(folder)
    return [catalog.load_file_entry(s) for s in catalog.file_stamps(folder)]


def by_name(entries, name):
    return next(e for e in entries if e.name == name)


def test_defaults_pick_a_recursive_checkpoint_of_the_first_task(entries):
    s, warns = sanitize({}, entries)
    assert warns == []
    assert (s.task, s.checkpoint, s.size, s.n, s.budget, s.seed) == ("prefix_sums", "prefix_sums-recursive", 64, 100,
                                                                     100, 0)
    assert s.solver is None and s.tol is None


def test_a_link_round_trips_through_its_query_parameters(entries):
    s, _ = sanitize({"checkpoint": "prefix_sums-deq", "size": "40", "budget": "33", "seed": "5", "tol": "0.001"},
                    entries)
    again, warns = sanitize(s.to_query(), entries)
    assert again == s and warns == []
    assert s.to_query()["solver"] == s.solver and s.to_query()["tol"] == "0.001"


def test_a_link_naming_only_a_checkpoint_opens_its_task(entries):
    s, warns = sanitize({"checkpoint": "mazes-recursive"}, entries)
    assert (s.task, s.checkpoint, s.size) == ("mazes", "mazes-recursive", 13) and warns == []


@pytest.mark.parametrize("raw, field, expected, says", [
    ({"size": "abc"}, "size", 64, "not an integer"),
    ({"size": "99999999"}, "size", 4096, "out of range"),
    ({"size": "-3"}, "size", 2, "out of range"),
    ({"size": "1e999"}, "size", 64, "not an integer"),
    ({"size": "x" * 10_000}, "size", 64, "..."),
    ({"budget": "0"}, "budget", 1, "out of range"),
    ({"budget": str(10**30)}, "budget", 100, "not an integer"),
    ({"budget": "5000"}, "budget", BUDGET_MAX, "out of range"),
    ({"n": "nan"}, "n", 100, "not an integer"),
    ({"n": "12.6"}, "n", 13, None),
    ({"seed": "-1"}, "seed", 0, "out of range"),
    ({"task": "<script>alert(1)</script>"}, "task", "prefix_sums", "unknown"),
    ({"checkpoint": "../../etc/passwd"}, "checkpoint", "prefix_sums-recursive", "not available"),
    ({"task": "prefix_sums", "checkpoint": "mazes-recursive"}, "checkpoint", "prefix_sums-recursive", "for task mazes"),
    ({"task": "mazes", "size": "10"}, "size", 11, "even"),
    ({"checkpoint": "prefix_sums-deq", "solver": "newton"}, "solver", "anderson", "unknown"),
    ({"checkpoint": "prefix_sums-deq", "tol": "2"}, "tol", 1e-4, "(0, 1)"),
    ({"checkpoint": "prefix_sums-deq", "tol": "0.0003"}, "tol", 1e-4, "nearest"),
    ({"checkpoint": "prefix_sums-deq", "solver": "fixed_point", "damping": "9"}, "damping", 1.0, "0.05..1"),
])
def test_hostile_or_junk_values_are_clamped_or_replaced_with_a_warning(entries, raw, field, expected, says):
    s, warns = sanitize(raw, entries)
    assert getattr(s, field) == expected
    if says is None:
        assert warns == []
    else:
        assert len(warns) == 1 and says in warns[0]
        assert len(warns[0]) < 300  # a long hostile value is quoted as a short prefix only


def test_too_many_problems_for_one_live_iteration_are_capped(entries):
    s, warns = sanitize({"checkpoint": "mazes-recursive", "size": "401", "n": str(N_MAX)}, entries)
    assert s.n < N_MAX and "too many" in warns[0]
    kept, warns = sanitize({"checkpoint": "mazes-recursive", "size": "401", "n": str(N_MAX)}, entries, cap_n=False)
    assert kept.n == N_MAX and warns == []  # the sidebar keeps the user's n ...
    run, note = for_run(kept, by_name(entries, "mazes-recursive"))
    assert run.n == s.n and f"of your {N_MAX} problems" in note  # ... and each run takes its share, saying so
    small, _ = sanitize({"checkpoint": "mazes-recursive", "size": "13", "n": "100"}, entries, cap_n=False)
    assert for_run(small, by_name(entries, "mazes-recursive")) == (small, None)


def test_without_any_checkpoint_the_settings_still_stand():
    s, warns = sanitize({"task": "addition", "checkpoint": "nope"}, [])
    assert (s.task, s.checkpoint, s.size) == ("addition", "", 32)
    assert "none" in warns[0]


def test_another_checkpoint_gets_its_own_solver_defaults(entries):
    s, _ = sanitize({"checkpoint": "prefix_sums-recursive", "size": "20"}, entries)
    deq = with_checkpoint(s, by_name(entries, "prefix_sums-deq"))
    assert (deq.checkpoint, deq.size, deq.solver) == ("prefix_sums-deq", 20, "anderson")
    assert deq == sanitize({"checkpoint": "prefix_sums-deq", "size": "20"}, entries)[0]


def test_the_app_uses_half_the_cpus_or_what_ttc_threads_says():
    assert [dashboard_threads(None, c) for c in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 4]
    assert dashboard_threads("3", 2) == 3
    assert dashboard_threads("lots", 8) == dashboard_threads("0", 8) == 4


def test_sweep_sizes_reach_past_the_chosen_size():
    assert sweep_sizes("prefix_sums", 64) == [32, 48, 64, 96]
    assert sweep_sizes("mazes", 13) == [7, 9, 13, 17]
    assert sweep_sizes("prefix_sums", 2) == [2, 3, 4, 6]


def settings(entries, **kw) -> tuple:
    s, _ = sanitize({"size": "16", "n": "12", "budget": "9", **{k: str(v) for k, v in kw.items()}}, entries)
    return s, by_name(entries, s.checkpoint)


def test_a_run_yields_one_point_per_iteration_and_explicit_models_their_depth(entries):
    s, e = settings(entries)
    t = compute_trace(e.ck, s)
    assert t.iters == 9 and t.complete and list(t.k) == list(range(1, 10))
    assert t.correct.shape == (9, 12) and t.preds.shape == (9, t.shown, 16)
    s, e = settings(entries, checkpoint="prefix_sums-explicit")
    assert compute_trace(e.ck, s).iters == e.ck.config.layers == 5


def test_live_snapshots_grow_and_end_equal_to_the_whole_trace(entries):
    s, e = settings(entries, checkpoint="prefix_sums-deq")
    run = LiveRun(e.ck, s)
    sizes = [run.trace().iters for _ in run]
    assert sizes == list(range(1, 10))
    whole = compute_trace(e.ck, s)
    np.testing.assert_allclose(run.trace().accuracy, whole.accuracy)
    np.testing.assert_array_equal(run.trace().preds, whole.preds)


def test_time_spent_drawing_between_iterations_is_not_counted_as_compute(entries, monkeypatch):
    """A consumer that holds the run 1000 s after each snapshot (a clock moved forward, no waiting): the run's
    elapsed time leaves all of it out. No wall-clock bound: the real compute is far below 1000 s."""
    s, e = settings(entries)
    real, away = time.perf_counter, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real() + away[0])
    run = LiveRun(e.ck, s)
    held = 0
    for _ in run:
        away[0] += 1000.0  # a slow consumer, as a live chart is
        held += 1
    assert held >= 2 and run.trace().iters == s.budget
    assert run.trace().elapsed[-1] < 1000.0



def test_a_live_run_keeps_the_shown_problems_predictions_and_not_the_whole_batch(entries):
    s, e = settings(entries, n=40)
    run = LiveRun(e.ck, s)
    assert run.shown < s.n
    for _ in run:
        pass
    kept = run._cols.cols["preds"]
    assert kept and all(p.base is None and p.shape[0] == run.shown for p in kept)  # copies, not views


def synthetic(acc: list[float], family: str = "recursive") -> Trace:
    k = len(acc)
    s = RunSettings("prefix_sums", "m", 8, 4, k, 0)
    z = np.zeros(k)
    return Trace(s, family, "conv1d", 10, "cpu_tensor_bytes", k, np.arange(1, k + 1), np.array(acc), z, z, z, z, z,
                 z, z, np.zeros((k, 4), bool), np.zeros((k, 4)), np.zeros((1, 8)), np.zeros((1, 8)),
                 np.zeros((k, 1, 8)))


def test_peak_note_says_where_a_model_peaks_and_whether_it_overthinks():
    assert "overthinks" in peak_note(synthetic([0.2, 0.9, 0.5]), "m")
    assert "no overthinking" in peak_note(synthetic([0.2, 0.9, 0.9]), "m")
    assert "still climbing" in peak_note(synthetic([0.1, 0.2, 0.3]), "m")
    # the case: a maze model peaking at 60% at iteration 85 of 100, still rising: not "no overthinking"
    rising = list(np.linspace(0.2, 0.6, 85)) + [0.59] * 15
    note = peak_note(synthetic(rising), "m")
    assert "still climbing" in note and "try 200 iterations" in note and "no overthinking" not in note
    assert "solves none" in peak_note(synthetic([0.0, 0.0]), "m")
    assert "fixed" in peak_note(synthetic([0.1, 0.3], family="explicit"), "m")
    note = peak_note(synthetic([0.0, 0.0], family="explicit"), "m")
    assert "solves none" in note and "peaks at 0%" not in note


def test_figure_data_exports_as_csv_json_and_standalone_html(entries):
    s, e = settings(entries)
    t = compute_trace(e.ck, s)
    fig = plots.residual_figure([(s.checkpoint, t)])
    table = export.figure_table(fig)
    assert len(table) == 9 and list(table.columns) == ["trace", "x", "y"]
    data = json.loads(export.to_json(fig))  # strict JSON: NaN residuals come out as null
    assert data["traces"][0]["x"] == list(range(1, 10)) and data["title"] == "Residual per iteration"
    heat = plots.heatmap_figure("m", [8, 16], [t.accuracy, None], 9)
    cells = export.figure_table(heat)
    assert len(cells) == 18 and cells["z"].isna().sum() == 9
    html = export.to_html(fig)
    assert html.lstrip().lower().startswith("<!doctype html>") and "Residual per iteration" in html
    assert "<script src=\"http" not in html  # plotly.js is inlined: the file opens offline


def test_png_and_svg_export_need_a_chromium_and_say_so_without_one(entries, monkeypatch):
    fig = plots.accuracy_figure([("m", synthetic([0.1, 0.5]))])
    if export.find_chromium() is None:
        with pytest.raises(RuntimeError, match="Chromium"):
            export.to_image(fig, "png")
    else:
        assert export.to_image(fig, "png")[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in export.to_image(fig, "svg")[:200]
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    ok, why = export.static_export_status()
    assert not ok and "BROWSER_PATH" in why


@pytest.mark.parametrize("checkpoint", ["prefix_sums-recursive", "prefix_sums-deq"])
def test_a_run_bundle_replays_with_the_cli(entries, checkpoint, tmp_path, capsys, monkeypatch):
    s, e = settings(entries, checkpoint=checkpoint)
    t = compute_trace(e.ck, s)
    with zipfile.ZipFile(io.BytesIO(export.run_bundle(t, e.name, e.weights(), "my-run"))) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"my-run"}
        z.extractall(tmp_path)
    readme = (tmp_path / "my-run" / "README.txt").read_text()
    cmd = json.loads((tmp_path / "my-run" / "settings.json").read_text())["replay"]
    assert cmd in readme and cmd.startswith("python -m ttc eval ")
    monkeypatch.chdir(tmp_path)  # where the bundle was unzipped, as its README says
    capsys.readouterr()
    assert cli_main(cmd.split()[3:]) == 0
    replay = json.loads(capsys.readouterr().out)
    stored = json.loads((tmp_path / "my-run" / "trace.json").read_text())
    assert replay["accuracy"] == pytest.approx(stored["accuracy"])
    assert replay["residual"] == pytest.approx(stored["residual"], rel=1e-4, nan_ok=True)
    assert stored["nfe"] == replay["nfe"] and stored["n"] == replay["n"] == 12


def test_a_stopped_run_bundle_says_so(entries):
    s, e = settings(entries)
    t = replace(compute_trace(e.ck, s), stopped=True)
    with zipfile.ZipFile(io.BytesIO(export.run_bundle(t, e.name, e.weights()))) as z:
        assert "stopped" in z.read("ttc-run/README.txt").decode()


def test_catalog_lists_an_invalid_file_with_its_error(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    [entry] = [catalog.load_file_entry(s) for s in catalog.file_stamps(tmp_path)]
    assert not entry.ok and "JSON" in entry.error
    assert catalog.card_row(entry)["status"].startswith("invalid")


def test_uploads_are_validated_like_shipped_checkpoints(entries):
    good = by_name(entries, "prefix_sums-deq")
    up = catalog.load_upload_entry("mine.safetensors", good.weights())
    assert up.ok and up.source == "upload" and up.family == "deq" and up.weights() == good.weights()
    with pytest.raises(CheckpointError, match="safetensors"):
        catalog.load_upload_entry("mine.pt", good.weights())
    with pytest.raises(CheckpointError):
        catalog.load_upload_entry("mine.safetensors", good.weights()[:100])


def test_memory_sweep_measures_the_contract_and_writes_the_ratios(entries):
    ck = by_name(entries, "prefix_sums-deq").ck
    rows = [measure_one(ck, 16, 2, 0, m, k, "cpu") for m in ("unrolled", "implicit") for k in (2, 8)]
    assert {tuple(sorted(r)) for r in rows} == {("iters", "mode", "nfe", "peak_bytes", "saved_bytes", "seconds")}
    assert rows[1]["saved_bytes"] > rows[0]["saved_bytes"] > 0 and rows[0]["peak_bytes"] is None
    notes = ratio_notes(rows)
    assert len(notes) == 2 and notes[1].startswith("8 iterations: unrolled keeps") and "implicit" in notes[1]


def test_the_app_opens_on_the_tasks_default_core_not_the_first_file_name(tmp_path):
    """By file name prefix_sums-deq comes first and the transformer beside the conv model; the
    default still comes from the task (its default arch) and the family order."""
    from models import ModelConfig, build_model
    from ttc.engine.checkpoint import save_checkpoint

    for name, arch in (("prefix_sums-recursive-transformer", "transformer"), ("prefix_sums-recursive", "conv1d"),
                       ("prefix_sums-deq", "conv1d"), ("prefix_sums-explicit", "conv1d")):
        fam = name.split("-")[1]
        cfg = ModelConfig(family=fam, arch=arch, in_channels=1, width=8, depth=1, layers=3, heads=2)
        save_checkpoint(tmp_path / f"{name}.safetensors", build_model(cfg), "prefix_sums")
    ents = [catalog.load_file_entry(s) for s in catalog.file_stamps(tmp_path)]
    assert sorted(e.name for e in ents)[0] != "prefix_sums-recursive"  # the file order would pick another
    assert sanitize({}, ents)[0].checkpoint == "prefix_sums-recursive"


def test_the_export_browser_is_stopped_once_no_export_used_it(monkeypatch):
    """kaleido's Chromium (about 1 GiB) lives only while exports use it: started by the first PNG, stopped once
    idle. kaleido and plotly's renderer are stood in for, so this runs without a browser."""
    import kaleido
    import plotly.io as pio

    export.stop_static_server()  # a real browser an earlier test started is really stopped
    calls = []
    monkeypatch.setattr(export, "static_export_status", lambda: (True, ""))
    monkeypatch.setattr(export, "find_chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **kw: calls.append("start"))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **kw: calls.append("stop"))
    monkeypatch.setattr(pio, "to_image", lambda fig, **kw: b"\x89PNG")
    monkeypatch.setattr(export, "KALEIDO_IDLE_SECONDS", 0.2)
    fig = plots.accuracy_figure([("m", synthetic([0.1, 0.5]))])
    assert export.to_image(fig, "png") == b"\x89PNG" and export.static_server_running()
    assert export.to_image(fig, "png") == b"\x89PNG" and calls == ["start"]  # one browser for both
    deadline = time.monotonic() + 30  # a state, with a generous deadline: never a timing
    while export.static_server_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not export.static_server_running() and calls == ["start", "stop"]
    export.to_image(fig, "png")  # the next export starts it again
    assert calls == ["start", "stop", "start"]
    export.stop_static_server()
    assert calls[-1] == "stop" and not export.static_server_running()
