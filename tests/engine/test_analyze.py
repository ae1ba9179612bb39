"""`ttc.engine.analyze` and `python -m ttc analyze`: the AA score on maps with one and with two fixed points,
halting at tol 0 equals the fixed-budget run, breadth with one start equals depth, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_model

from models import IterativeModel, IterState, ModelConfig
from tasks import get_task
from ttc.engine.analyze import alignment, analyze, halt_at, start_names
from ttc.engine.checkpoint import save_checkpoint
from ttc.tools.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
TASK = get_task("prefix_sums")


class _Map(IterativeModel):
    """z_k = f(z_{k-1}, e) for a fixed elementwise map: the test's control over the fixed points."""

    family_name = "test_map"

    def __init__(self, f):
        super().__init__(ModelConfig(family="recursive", arch="conv1d", in_channels=1, width=4, depth=1, layers=3))
        self.f = f

    def stream(self, x, iters, z0=None, readout=True, settings=None):
        e = self.encoder(x)
        z = torch.zeros_like(e) if z0 is None else z0
        for k in range(1, iters + 1):
            z = self.f(z, e)
            yield IterState(k=k, z=z, logits=self.readout(z), nfe=k)


def _problems(n=16, size=8, seed=3):
    return TASK.generate(size, n, seed)


def test_a_contraction_from_any_start_scores_one():
    model = _Map(lambda z, e: 0.5 * z + e).eval()  # one fixed point, 2e, reached from anywhere
    x, y = _problems()
    out = analyze(model, TASK, x, y, iters=60, starts=5, seed=1)
    pi = out["path_independence"]
    assert pi["aa_score"] == pytest.approx(1.0, abs=1e-6)
    assert all(s["distance_from_zero_start"] < 1e-6 for s in pi["starts"])
    assert [s["start"] for s in pi["starts"]] == start_names(5)


def test_a_map_with_two_fixed_points_scores_below_one():
    # tanh(3z) has stable fixed points near +1 and -1 in every coordinate: the sign of the start decides
    model = _Map(lambda z, e: torch.tanh(3 * z + 1e-3 * e)).eval()
    x, y = _problems()
    out = analyze(model, TASK, x, y, iters=40, starts=4, seed=2)
    assert out["path_independence"]["aa_score"] < 0.5
    assert alignment([torch.ones(3, 4), -torch.ones(3, 4)]) == pytest.approx(-1.0)
    assert alignment([torch.ones(3, 4)]) == 1.0


@pytest.fixture(scope="module")
def trained_like():
    """A tiny recursive model with a little training signal baked in: any deterministic model will do."""
    return tiny_model("prefix_sums", "recursive", "conv1d", seed=5)


def test_halting_at_tol_zero_is_the_fixed_budget_run(trained_like):
    x, y = _problems(n=20)
    out = analyze(trained_like, TASK, x, y, iters=6, starts=2, seed=0)
    depth = out["halting"]["fixed_budget"]
    from ttc.engine.analyze import _run

    run = _run(trained_like, TASK, x, y, 12, "zeros", None, None, None, set(), None)
    at = halt_at(run, "residual", 0.0)
    assert (at == 12).all()  # nothing ever falls below 0: every sample runs the whole budget
    assert float(run.correct[at - 1, np.arange(20)].mean()) == pytest.approx(depth["accuracy"][-1])
    assert [r for r in out["halting"]["rules"] if r["rule"] == "stable"][0]["mean_iters"] <= 12


def test_breadth_with_one_start_equals_depth(trained_like):
    x, y = _problems(n=20)
    out = analyze(trained_like, TASK, x, y, iters=7, starts=1, seed=0)
    (one,) = out["breadth"]["points"]
    assert one["starts"] == 1 and one["depth_iters"] == 7 and one["nfe"] == one["depth_nfe"] == 7
    assert one["breadth_accuracy"] == one["depth_accuracy"] == out["path_independence"]["starts"][0]["final_accuracy"]
    assert out["path_independence"]["aa_score"] == 1.0


def test_the_analysis_reproduces_from_its_seed(trained_like):
    x, y = _problems(n=10)
    a = analyze(trained_like, TASK, x, y, iters=5, starts=3, seed=4)
    b = analyze(trained_like, TASK, x, y, iters=5, starts=3, seed=4)
    assert json.dumps(a) == json.dumps(b)


def test_analyze_command_prints_one_json_object(tmp_path, capsys):
    ck = save_checkpoint(tmp_path / "r.safetensors", tiny_model("prefix_sums", "memory", "conv1d"), "prefix_sums")
    assert main(["analyze", "--checkpoint", str(ck), "--size", "8", "--iters", "4", "--starts", "3", "--n", "6",
                 "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"path_independence", "fixed_point_vs_iterate", "halting", "breadth"}
    assert len(out["path_independence"]["starts"]) == 3 and len(out["breadth"]["points"]) == 3
    assert out["fixed_point_vs_iterate"]["iters"] == 12


def test_a_deq_reports_whether_every_start_reaches_the_same_fixed_point(tmp_path, capsys):
    ck = save_checkpoint(tmp_path / "d.safetensors", tiny_model("prefix_sums", "deq", "conv1d", norm=True),
                         "prefix_sums")
    assert main(["analyze", "--checkpoint", str(ck), "--size", "8", "--iters", "30", "--starts", "3", "--n", "6",
                 "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    pi = res["path_independence"]
    assert isinstance(pi["same_fixed_point"], bool) and "tol" in pi["same_fixed_point_rule"]
    assert "solver" in {r["rule"] for r in res["halting"]["rules"]}  # the solver's own stop is a halting rule


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own checks: one line, exit 2 (cli.Parser)
        return int(e.code)


@pytest.mark.parametrize("args,message", [
    (["--starts", "9"], "--starts"),
    (["--iters", "0"], "--iters"),
    (["--size", "99999"], "size"),
    (["--starts", "8", "--iters", "700"], "at most"),
    (["--n", "60000", "--size", "4096", "--iters", "600"], "cost"),
    (["--n", "100000", "--size", "4096"], "bytes"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, args, message):
    ck = save_checkpoint(tmp_path / "r.safetensors", tiny_model("prefix_sums", "recursive", "conv1d"), "prefix_sums")
    opts = {"--size": "8", "--iters": "4", **dict(zip(args[::2], args[1::2], strict=True))}
    assert _exit_code(["analyze", "--checkpoint", str(ck), "--quiet", *[t for kv in opts.items() for t in kv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err


def test_a_fixed_depth_checkpoint_is_refused(tmp_path, capsys):
    ck = save_checkpoint(tmp_path / "e.safetensors", tiny_model("prefix_sums", "explicit", "conv1d"), "prefix_sums")
    assert main(["analyze", "--checkpoint", str(ck), "--size", "8", "--iters", "4", "--quiet"]) == 2
    assert "fixed" in capsys.readouterr().err
