"""Bring your own model: a family and a task from a module outside the package (examples/toy_plugin.py copied
to a temporary folder), loaded through TTC_PLUGINS, go through train, eval, the report and the dashboard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ttc", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(env with TTC_PLUGINS and PYTHONPATH set, folder of a checkpoint trained through the plugin)."""
    home = tmp_path_factory.mktemp("user_plugin")
    shutil.copy(ROOT / "examples" / "toy_plugin.py", home / "toy_plugin.py")
    env = {**os.environ, "PYTHONPATH": str(home), "TTC_PLUGINS": "toy_plugin", "TTC_THREADS": "1"}
    cks = home / "checkpoints"
    r = _run(["train", "--task", "running_or", "--family", "relaxed", "--arch", "conv1d", "--width", "16",
              "--depth", "1", "--layers", "6", "--sizes", "8", "--batch", "16", "--steps", "30", "--val-every", "30",
              "--val-n", "16", "--val-size", "16", "--threads", "1", "--quiet", "--mix-train", "0.8",
              "--out", str(cks / "running_or-relaxed.safetensors")], env)
    assert r.returncode == 0, r.stderr
    return env, cks, home


def test_plugin_family_and_task_train_and_eval(plugin):
    env, cks, _ = plugin
    card = json.loads((cks / "running_or-relaxed.json").read_text())
    assert (card["task"], card["family"], card["steps_run"]) == ("running_or", "relaxed", 30)
    assert card["family_options"] == {"mix_train": 0.8}  # its own training option, a flag of train
    r = _run(["eval", "--checkpoint", str(cks / "running_or-relaxed.safetensors"), "--size", "16", "--iters", "12",
              "--n", "32", "--option", "mix=0.5", "--json"], env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["task"], out["family"], len(out["accuracy"]), out["n"]) == ("running_or", "relaxed", 12, 32)
    assert len(out["step_norm"]) == 12 and all(v >= 0 for v in out["step_norm"])  # its own series


def test_plugin_memory_modes_in_the_memory_command_and_the_bench(plugin):
    env, cks, _ = plugin
    ck = str(cks / "running_or-relaxed.safetensors")
    r = _run(["memory", "--checkpoint", ck, "--size", "16", "--iters", "2,8", "--json"], env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {(x["mode"], x["iters"]) for x in rows} == {("unrolled", 2), ("unrolled", 8), ("last_step", 2),
                                                       ("last_step", 8)}
    saved = {(x["mode"], x["iters"]): x["saved_bytes"] for x in rows}
    assert saved["unrolled", 8] > saved["last_step", 8]  # backprop through one step keeps less
    r = _run(["bench", "--quick", "--groups", "memory", "--checkpoints", str(cks), "--device", "cpu", "--json",
              "--quiet"], env)
    assert r.returncode == 0, r.stderr
    names = [e["name"] for e in json.loads(r.stdout)["entries"]]
    assert any("unrolled vs last_step" in n and "running_or-relaxed" in n for n in names), names


def test_plugin_settings_are_validated_by_the_family(plugin):
    env, cks, _ = plugin
    ck = str(cks / "running_or-relaxed.safetensors")
    r = _run(["eval", "--checkpoint", ck, "--size", "16", "--iters", "5", "--option", "mix=2"], env)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "mix must be a number in (0, 1]" in r.stderr
    r = _run(["eval", "--checkpoint", ck, "--size", "16", "--iters", "5", "--solver", "anderson"], env)
    assert r.returncode == 2 and "--solver applies to families with a solver" in r.stderr


def test_without_the_plugin_its_checkpoint_is_refused_with_the_reason(plugin):
    env, cks, _ = plugin
    bare = {k: v for k, v in env.items() if k != "TTC_PLUGINS"}
    r = _run(["eval", "--checkpoint", str(cks / "running_or-relaxed.safetensors"), "--size", "16", "--iters", "5"],
             bare)
    assert r.returncode == 2 and "running_or" in r.stderr and "unknown" in r.stderr


def test_a_plugin_that_does_not_import_is_one_error_line(plugin):
    env, _, _ = plugin
    r = _run(["eval", "--help"], {**env, "TTC_PLUGINS": "toy_plugin,no_such_plugin_module"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: TTC_PLUGINS: cannot import 'no_such_plugin_module': ModuleNotFoundError: No module named "
        "'no_such_plugin_module'"]


def test_plugin_checkpoint_in_the_report(plugin, tmp_path):
    env, cks, _ = plugin
    r = _run(["report", "--quick", "--tasks", "running_or", "--checkpoints", str(cks), "--formats", "html",
              "--out", str(tmp_path / "rep"), "--quiet"], env)
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    (task,) = results["tasks"]
    assert task["task"] == "running_or"
    assert {c["checkpoint"] for c in task["curves"]} == {"running_or-relaxed"}
    assert "running_or-relaxed" in (tmp_path / "rep" / "summary.md").read_text()


def test_plugin_family_and_its_widget_in_the_dashboard(plugin, monkeypatch):
    from streamlit.testing.v1 import AppTest

    env, cks, home = plugin
    monkeypatch.syspath_prepend(str(home))
    monkeypatch.setenv("TTC_PLUGINS", "toy_plugin")
    monkeypatch.setenv("TTC_CHECKPOINTS", str(cks))
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params = {"task": "running_or", "size": "24", "n": "8", "budget": "12", "mix": "0.5"}
        at.run()
        assert not at.exception, at.exception
        assert at.selectbox(key="w_task").value == "running_or"
        assert at.selectbox(key="w_checkpoint").value == "running_or-relaxed"
        assert at.slider(key="w_mix").value == 0.5  # the family's own widget, drawn from its description
        assert not at.warning, [w.value for w in at.warning]
        keys = {c.key for c in at.get("plotly_chart")}
        assert "series-step_norm" in keys  # its series, labelled as it declares
        assert "map-state_norm" in keys  # its map, drawn by the figure kind it names
    finally:  # the app imported the plugin into this process: leave the registries as the other tests expect
        from models.registry import _FAMILIES
        from tasks import TASKS

        _FAMILIES.pop("relaxed", None)
        TASKS.pop("running_or", None)
        sys.modules.pop("toy_plugin", None)
