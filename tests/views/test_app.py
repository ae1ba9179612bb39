"""Headless app tests (Streamlit AppTest): every page runs, widgets and links drive the figures' data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.dashboard_checkpoints import make_checkpoints
from ttc.engine.memory import MODES

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ("views/explore.py", "views/compare.py", "views/memory.py", "views/checkpoints.py")
SMALL = {"size": "16", "n": "12", "budget": "8"}  # quick runs on the tiny checkpoints


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    make_checkpoints(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTC_CHECKPOINTS", str(folder))
        yield folder
    torch.set_num_threads(threads)


def app_on(page: str, query: dict, **own) -> AppTest:
    """The shared settings from a link, then the page with its own query parameters (as a shared URL of that
    page would carry them)."""
    at = app(query)
    at.query_params.update(own)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def app(query: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)  # generous: CI machines are shared
    at.query_params = dict(query or {})
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """The plotly figures on the page, by element key, as the JSON the browser receives."""
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def xs(spec: dict, i: int = 0) -> list:
    return spec["data"][i].get("x") or []


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_exception(ckpt_dir, page):
    at = app(SMALL, page)
    assert at.title[0].value == Path(page).stem.capitalize()
    assert not at.error
    if page != "views/checkpoints.py":
        assert charts(at)


def test_settings_follow_from_page_to_page(ckpt_dir):
    at = app(SMALL)
    at.number_input(key="w_size").set_value(20).run()
    for page in ("views/compare.py", "views/memory.py", "views/explore.py"):
        at.switch_page(page).run()
        assert not at.exception and at.number_input(key="w_size").value == 20, page


def test_changing_the_task_starts_from_its_checkpoint_and_size_without_warnings(ckpt_dir):
    at = app(SMALL)
    at.selectbox(key="w_task").set_value("mazes").run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="w_checkpoint").value == "mazes-recursive" and at.number_input(key="w_size").value == 13
    assert charts(at)["example"]["data"][0]["type"] == "image"  # the inspector draws the maze


def test_sudoku_draws_its_grid_with_each_cells_confidence(ckpt_dir):
    at = app({"task": "sudoku", "checkpoint": "sudoku-recursive", "size": "45", "n": "6", "budget": "4"})
    assert not at.exception and not at.error
    assert at.number_input(key="w_size").label.startswith("Blank cells (1..58)")
    grid = charts(at)["example"]
    heat = grid["data"][0]
    assert heat["type"] == "heatmap" and len(heat["z"]) == 9 and len(heat["text"][0]) == 9
    assert {d.get("name") for d in grid["data"][1:]} <= {"given", "predicted, right", "predicted, wrong"}
    blanks = [t for row in heat["text"] for t in row if "<span" in t]  # a blank shows its confidence
    assert len(blanks) == 45


def test_a_run_yields_one_point_per_iteration(ckpt_dir):
    at = app(SMALL)
    figs = charts(at)
    for key in ("final-accuracy", "final-residual", "final-memory"):
        assert xs(figs[key]) == list(range(1, 9))
    assert figs["final-accuracy"]["data"][0]["name"] == "prefix_sums-recursive"
    assert {m.label: m.value for m in at.metric}["NFE"] == "8"
    assert "Done: 8 iterations" in at.get("progress")[0].proto.text


def test_an_explicit_model_yields_its_depth_whatever_the_budget(ckpt_dir):
    at = app({**SMALL, "checkpoint": "prefix_sums-explicit"})
    assert xs(charts(at)["final-accuracy"]) == list(range(1, 6))


def test_changing_size_budget_and_checkpoint_changes_the_figures(ckpt_dir):
    at = app(SMALL)
    before = charts(at)
    assert len(before["example"]["data"][0]["z"][0]) == 16  # the inspector's bit rows span the problem

    at.number_input(key="w_size").set_value(24).run()
    after_size = charts(at)
    assert len(after_size["example"]["data"][0]["z"][0]) == 24
    assert after_size["final-residual"]["data"][0]["y"] != before["final-residual"]["data"][0]["y"]
    assert at.query_params["size"] == ["24"] or at.query_params["size"] == "24"

    at.slider(key="w_budget").set_value(13).run()
    assert xs(charts(at)["final-accuracy"]) == list(range(1, 14))

    at.selectbox(key="w_checkpoint").set_value("prefix_sums-deq").run()
    assert not at.exception
    figs = charts(at)
    assert figs["final-accuracy"]["data"][0]["name"] == "prefix_sums-deq"
    assert figs["final-residual"]["data"][0]["y"] != charts(app({**SMALL, "size": "24", "budget": "13"}))[
        "final-residual"]["data"][0]["y"]
    assert at.selectbox(key="w_solver").value == "anderson"  # DEQ settings appear for a DEQ


def test_the_inspector_scrubs_through_iterations(ckpt_dir):
    at = app(SMALL)
    at.slider(key="insp_k").set_value(3).run()
    fig = charts(at)["example"]
    assert fig["layout"]["title"]["text"].startswith("Problem 0, iteration 3:")
    at.selectbox(key="insp_problem").set_value(2).run()
    assert charts(at)["example"]["layout"]["title"]["text"].startswith("Problem 2, iteration 3:")


def test_a_link_opens_the_same_view(ckpt_dir):
    link = {"task": "prefix_sums", "checkpoint": "prefix_sums-deq", "size": "20", "n": "7", "budget": "11",
            "seed": "3", "solver": "fixed_point", "tol": "0.001", "damping": "0.5"}
    at = app(link)
    assert not at.warning
    assert at.number_input(key="w_size").value == 20 and at.slider(key="w_budget").value == 11
    assert at.number_input(key="w_seed").value == 3 and at.selectbox(key="w_solver").value == "fixed_point"
    assert at.slider(key="w_damping").value == 0.5
    assert xs(charts(at)["final-accuracy"]) == list(range(1, 12))
    assert {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()} == link


@pytest.mark.parametrize("query", [
    {"task": "chess", "size": "huge", "budget": "-1", "n": "1e12", "seed": "🙂"},
    {"checkpoint": "x" * 5000, "size": "99999999999999999999999", "tol": "inf", "solver": "' OR 1=1"},
    {"task": "mazes", "size": "8", "checkpoint": "prefix_sums-recursive", "budget": "nan"},
])
def test_a_hostile_link_is_clamped_with_warnings_never_a_traceback(ckpt_dir, query):
    at = app({**query, "n": query.get("n", "5")})
    assert at.warning and all(len(w.value) < 300 for w in at.warning)
    assert 1 <= at.slider(key="w_budget").value <= 1000
    assert charts(at)["final-accuracy"]


def test_an_upload_is_validated_and_usable_on_every_page(ckpt_dir):
    at = app(SMALL, "views/checkpoints.py")
    data = (ckpt_dir / "prefix_sums-deq.safetensors").read_bytes()
    at.file_uploader(key="upload").set_value(("mine.safetensors", data, "application/octet-stream")).run()
    assert not at.exception and "mine.safetensors is valid" in at.success[0].value
    assert "mine" in list(at.dataframe[0].value["name"])
    at.switch_page("views/explore.py").run()
    at.selectbox(key="w_checkpoint").set_value("mine").run()
    assert not at.exception
    assert charts(at)["final-accuracy"]["data"][0]["name"] == "mine"


@pytest.mark.parametrize("name, data", [("junk.safetensors", b"\x00" * 64),
                                        ("pickled.safetensors", b"PK\x03\x04" + b"\x80\x02}q\x00." * 50)])
def test_a_bad_upload_is_refused_with_its_reason(ckpt_dir, name, data):
    at = app(SMALL, "views/checkpoints.py")
    at.file_uploader(key="upload").set_value((name, data, "application/octet-stream")).run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith(f"{name} was refused:")


def test_compare_runs_every_checkpoint_and_fills_the_heat_map(ckpt_dir):
    at = app(SMALL, "views/compare.py")
    figs = charts(at)
    names = {d["name"] for d in figs["cmp-it"]["data"] if "interval" not in d["name"]}
    assert names == {"prefix_sums-recursive", "prefix_sums-explicit", "prefix_sums-deq", "prefix_sums-ebm"}
    assert {d["name"] for d in figs["cmp-time"]["data"] if "interval" not in d["name"]} == names
    assert {d["name"] for d in figs["cmp-it"]["data"] if d["name"].endswith("95% interval (n=12)")} == {
        f"{n}: 95% interval (n=12)" for n in names}  # every curve has its band
    heat = figs["heat"]["data"][0]
    assert heat["y"] == ["8", "12", "16", "24"] and len(heat["x"]) == 8
    assert all(v is not None for row in heat["z"] for v in row)
    assert len([m for m in at.markdown if "peaks" in m.value or "solves none" in m.value]) == 1


def test_memory_compares_the_backward_modes(ckpt_dir):
    at = app(SMALL, "views/memory.py")
    at.multiselect(key="mem_iters").set_value([2, 5]).run()
    fig = charts(at)["mem-saved"]
    assert [d["name"] for d in fig["data"]] == list(MODES)
    assert all(d["x"] == [2, 5] for d in fig["data"])
    assert any("unrolled keeps" in m.value for m in at.markdown)


def test_an_empty_checkpoint_folder_gives_guidance_not_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TTC_CHECKPOINTS", str(tmp_path))
    for page in PAGES:
        at = app(page=page)
        assert at.info, page


def test_the_fixed_points_page_analyses_a_looped_checkpoint_from_its_link(ckpt_dir):
    at = app_on("views/analysis.py", {**SMALL, "checkpoint": "prefix_sums-recursive"}, starts="3")
    assert at.title[0].value == "Fixed points" and not at.error
    specs = charts(at)
    starts = specs["starts"]
    assert [t["name"] for t in starts["data"]] == ["zeros", "noise x0.5", "noise x1"]
    assert all(len(t["x"]) == int(SMALL["budget"]) for t in starts["data"])
    assert {"distances", "halting", "breadth"} <= set(specs)
    assert len(specs["breadth"]["data"][0]["x"]) == 3  # best of 1, 2, 3 starts
    assert at.query_params["starts"] == ["3"] or at.query_params["starts"] == "3"
    assert [m.label for m in at.metric][:1] == ["AA score"]


def test_the_fixed_points_page_says_what_it_cannot_do(ckpt_dir):
    at = app_on("views/analysis.py", {**SMALL, "checkpoint": "prefix_sums-explicit"})
    assert any("fixed at" in i.value for i in at.info) and not charts(at)
    at = app_on("views/analysis.py", {**SMALL, "checkpoint": "prefix_sums-deq"}, starts="99")
    assert any("outside 1..8" in w.value for w in at.warning)
    assert [m.label for m in at.metric][2] == "Same fixed point"


def test_a_cut_in_problems_is_per_run_and_said_each_time(ckpt_dir):
    """A 201 maze takes fewer problems for its run; going back to a small maze runs the user's n again."""
    at = app({"task": "mazes", "checkpoint": "mazes-recursive", "size": "201", "n": "100", "budget": "2"})
    assert any("of your 100 problems" in w.value for w in at.warning)
    at.number_input(key="w_size").set_value(13).run()
    assert not at.exception
    assert at.number_input(key="w_n").value == 100 and not any("of your" in w.value for w in at.warning)
    assert "of 100" in " ".join(str(m.proto.delta) for m in at.metric)


def test_a_pinned_run_is_overlaid_with_a_legend_and_the_training_depth_is_marked(ckpt_dir):
    at = app(SMALL)
    at.button(key="explore_pin").click().run()
    at.slider(key="w_budget").set_value(5).run()
    assert not at.exception
    acc = charts(at)["final-accuracy"]
    names = [d.get("name") for d in acc["data"]]
    assert names[:2] == ["prefix_sums-recursive (size 16, n 12, budget 8, seed 0)",
                         "prefix_sums-recursive (size 16, n 12, budget 5, seed 0)"]
    assert [len(d["x"]) for d in acc["data"][:2]] == [8, 5]
    # the training depth (tiny: 6 iterations): a dotted line named in the legend, no label over the curves
    assert "trained at 6 iterations" in names and not acc["layout"].get("annotations")
    assert any(sh.get("x0") == 6 for sh in acc["layout"].get("shapes", []))
    assert any("Overlaid: prefix_sums-recursive (size 16, n 12, budget 8, seed 0)" in c.value for c in at.caption)
    at.button(key="explore_unpin").click().run()
    assert [d.get("name") for d in charts(at)["final-accuracy"]["data"]][0] == "prefix_sums-recursive"


def test_a_costly_run_from_a_link_waits_for_run_and_says_its_estimate(ckpt_dir):
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params = {**SMALL, "seed": "77"}  # settings no other test ran: not in the trace cache
    at.session_state["explore_rate"] = 1.0  # this machine as slow as can be: every run is estimated costly
    at.run()
    assert not at.exception and not charts(at)
    text = at.get("progress")[0].proto.text
    assert text.startswith("Waiting: this run is estimated at about") and "Press Run" in text
    at.button(key="explore_run").click().run()
    assert xs(charts(at)["final-accuracy"]) == list(range(1, 9))


def test_a_sessions_first_long_run_is_started_by_the_browser_once_the_page_is_drawn(ckpt_dir):
    """The page is drawn without the run and arms a browser timer (a fragment's run_every, which AppTest does not
    fire; the browser tests open pages on long runs through it); the page's next run is the run."""
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params = {**SMALL, "seed": "78"}  # not in the trace cache
    at.session_state["explore_rate"] = 12 * 16 * 8 * 8 ** 2 / 10  # cost units/s: this run estimated at 10 s
    at.run()
    assert not at.exception and not charts(at)
    assert at.get("progress")[0].proto.text.startswith("Starting: this run (about 10 s) begins once the page")
    assert at.session_state["explore_drawn"]
    at.run()  # the timer's fragment run reruns the page (st.rerun(scope="app")), as this does
    assert not at.exception and xs(charts(at)["final-accuracy"]) == list(range(1, 9))
    at.query_params["seed"] = "79"
    at.run()  # the session's later runs start at once
    assert xs(charts(at)["final-accuracy"]) == list(range(1, 9))


def test_a_rerun_after_a_live_run_still_says_how_it_was_drawn(ckpt_dir):
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params = {"size": "64", "n": "100", "budget": "400", "seed": "80"}  # about a second: several frames
    at.session_state["explore_mounted"] = True  # frames at the live rate from the start
    at.run()
    text = at.get("progress")[0].proto.text
    assert not at.exception and text.startswith("Done:") and "Drawn live at" in text, text
    assert at.session_state["explore_drawn"]  # the session's first page armed the browser's one redraw
    at.run()  # the same settings again (that redraw, or the browser's on reconnecting): from the trace cache
    assert at.get("progress")[0].proto.text == text


def test_the_export_menu_labels_are_whole_and_the_memory_table_reads_in_mib(ckpt_dir):
    at = app(SMALL)
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"PNG image", "SVG image", "HTML (interactive)", "CSV (the curves' data)",
            "JSON (the plotly figure)"} <= labels
    at = app({**SMALL, "checkpoint": "prefix_sums-deq"}, "views/memory.py")
    cols = list(at.dataframe[0].value.columns)
    assert "saved (MiB)" in cols and "saved_bytes" not in cols
    if not torch.cuda.is_available():
        assert "peak_bytes" not in cols and "peak (MiB)" not in cols


def test_an_energy_based_run_shows_its_energy_and_the_answer_forming(ckpt_dir):
    at = app({**SMALL, "checkpoint": "prefix_sums-ebm", "step": "0.5", "momentum": "0", "tol": "0"})
    assert not at.warning, [w.value for w in at.warning]  # a choice of 0 (no momentum, no stop) is a valid value
    figs = charts(at)
    energy = figs["series-energy"]
    assert energy["data"][-1]["name"].endswith(": mean") and len(energy["data"][-1]["y"]) == 8
    assert "series-grad_norm" in figs
    answer = figs["map-answer"]["data"][0]
    assert answer["type"] == "heatmap" and len(answer["z"]) == 8 and len(answer["z"][0]) == 16  # iterations x cells
    assert all(0.0 <= v <= 1.0 for row in answer["z"] for v in row)
    assert at.query_params["step"] == "0.5" and float(at.query_params["momentum"]) == 0.0
    at.slider(key="insp_k").set_value(3).run()
    shapes = charts(at)["map-answer"]["layout"]["shapes"]
    assert shapes and shapes[0]["y0"] == 3  # the scrubbed iteration is marked


def test_memory_measures_an_energy_based_models_own_modes(ckpt_dir):
    at = app(SMALL, "views/memory.py")
    at.selectbox(key="mem_checkpoint_prefix_sums").set_value("prefix_sums-ebm").run()
    at.multiselect(key="mem_iters").set_value([2, 5]).run()
    assert not at.exception, [e.value for e in at.exception]
    fig = charts(at)["mem-saved"]
    assert [d["name"] for d in fig["data"]] == ["unrolled", "last"]
    saved = {d["name"]: d["y"] for d in fig["data"]}
    assert saved["unrolled"][1] > saved["unrolled"][0] and saved["last"][1] == saved["last"][0]
    assert any("last" in m.value and "unrolled keeps" in m.value for m in at.markdown)


def test_a_links_warnings_stay_until_the_settings_change(ckpt_dir):
    at = app({**SMALL, "checkpoint": "does-not-exist", "precision": "fp8", "difficulty": "abc"})
    said = [w.value for w in at.warning]
    assert any("does-not-exist" in w for w in said) and any("fp8" in w for w in said)
    at.run()  # a rerun with the same settings (as after a live run ends): still said
    assert [w.value for w in at.warning if "does-not-exist" in w.value]
    at.number_input(key="w_size").set_value(18).run()  # the user changed something: the link's warnings go
    assert not [w.value for w in at.warning if "does-not-exist" in w.value]


def test_precision_and_difficulty_from_a_link_reach_the_run(ckpt_dir):
    at = app({**SMALL, "precision": "fp32", "difficulty": "6"})
    assert at.selectbox(key="w_precision").value == "fp32"
    assert at.number_input(key="w_difficulty").value == 6
    assert any("in fp32" in c.value for c in at.caption)
    assert "difficulty" in charts(at)  # Explore's iterations-against-difficulty scatter
    assert at.query_params["precision"] == ["fp32"] or at.query_params["precision"] == "fp32"


def test_the_memory_pages_link_reopens_the_same_view(ckpt_dir):
    at = app_on("views/memory.py", {"size": "12"}, mem_checkpoint="prefix_sums-deq", mem_iters="10,100",
                mem_modes="implicit,jfb", mem_batch="2")
    assert at.number_input(key="mem_batch").value == 2
    assert sorted(at.multiselect(key="mem_iters").value) == [10, 100]
    q = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert q["mem_checkpoint"] == "prefix_sums-deq" and q["mem_iters"] == "10,100" and q["mem_batch"] == "2"
    assert q["mem_modes"] == "implicit,jfb"


def test_compares_extrapolation_map_is_in_the_link(ckpt_dir):
    at = app_on("views/compare.py", SMALL, heat_checkpoint="prefix_sums-deq", heat_sizes="16,32")
    q = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert q["heat_checkpoint"] == "prefix_sums-deq" and q["heat_sizes"] == "16,32"


def test_pins_that_differ_only_in_seed_have_their_own_label_and_style(ckpt_dir):
    from ttc.app.plots import _style

    at = app(SMALL)
    for seed in (1, 2, 3):
        at.button(key="explore_pin").click().run()
        at.number_input(key="w_seed").set_value(seed).run()
    names = [d.get("name") for d in charts(at)["final-accuracy"]["data"]
             if "seed" in (d.get("name") or "") and "interval" not in d.get("name")]
    assert len(set(names)) == 4 and [f"seed {i}" in n for i, n in enumerate(names)] == [True] * 4
    pins = at.session_state["explore_pins"]
    styles = _style(pins)
    assert len({(v["color"], v["dash"]) for v in styles.values()}) == len(pins)
