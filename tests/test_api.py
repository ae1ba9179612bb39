"""The Python API (ttc.load, ttc.run, ttc.analyze, ttc.memory) and the example notebook."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import numpy as np
import pytest

import ttc
from ttc.engine.checkpoint import CheckpointError


def test_import_ttc_is_light():
    code = "import sys, ttc; print(json.dumps([m for m in ('streamlit', 'plotly') if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_load_by_name_and_path_and_refuse_unknown():
    a = ttc.load("prefix_sums-recursive")
    b = ttc.load("checkpoints/prefix_sums-recursive.safetensors")
    assert a.name == b.name == "prefix_sums-recursive"
    with pytest.raises(CheckpointError, match="not a zoo name"):
        ttc.load("no-such-model")


def test_run_matches_the_cli_eval(cli, one_thread):
    run = ttc.run("prefix_sums-recursive", size=24, iters=20, n=16, seed=3, precision="fp32")
    r = cli("eval", "--checkpoint", "checkpoints/prefix_sums-recursive.safetensors", "--size", "24", "--iters", "20",
            "--n", "16", "--seed", "3", "--precision", "fp32", "--json", "--quiet")
    out = json.loads(r.out)
    assert run.accuracy.tolist() == out["accuracy"] and run.best_iter == out["best_iter"]
    assert run.solved_at == out["solved_at"] and run.difficulty.tolist() == out["difficulty"]
    df = run.to_pandas()
    assert list(df.columns[:3]) == ["iteration", "accuracy", "residual"] and len(df) == 20
    assert len(run.problems()) == 16
    fig = run.figure()
    assert len(fig.data) == 2 and list(fig.data[0].y) == run.accuracy.tolist()


def test_analyze_and_memory(one_thread):
    an = ttc.analyze("prefix_sums-recursive", size=16, iters=10, starts=2, n=8, seed=0, precision="fp32")
    assert 0.0 <= an["path_independence"]["aa_score"] <= 1.0 and an["precision"] == "fp32"
    mem = ttc.memory("prefix_sums-deq", size=16, iters=(4, 8), batch=2, precision="fp32")
    assert set(mem["mode"]) == {"unrolled", "implicit", "jfb"} and (mem["saved_bytes"] > 0).all()
    un = mem[mem["mode"] == "unrolled"].set_index("iters")["saved_bytes"]
    assert un[8] > un[4]  # unrolled grows with the iterations
    with pytest.raises(ValueError, match="memory modes"):
        ttc.memory("prefix_sums-recursive", size=16)
    with pytest.raises(ValueError, match="would save about"):  # refused before it runs, as on the command line
        ttc.memory("prefix_sums-deq", size=16, iters=(10**9,), modes=("unrolled",), batch=2, precision="fp32")


def test_the_example_notebook_runs(capsys, one_thread):
    runpy.run_path("examples/quickstart.py", run_name="__main__")
    out = capsys.readouterr().out
    assert "AA score" in out and "traces" in out and np.isfinite(1.0)
