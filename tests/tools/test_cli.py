"""`python -m ttc`: data/eval round trip, the eval JSON contract, every bad input refused in one line."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, SMALL_SIZE, TASK_ARCHS, TINY, forge_checkpoint, tiny_model

from models import FAMILIES
from tasks import get_task, load_npz, save_npz
from ttc.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

CONTRACT = (
    "task",
    "family",
    "arch",
    "params",
    "size",
    "n",
    "iters",
    "device",
    "accuracy",
    "final_accuracy",
    "best_accuracy",
    "best_iter",
    "residual",
    "nfe",
    "seconds",
)
CASES = [(task, family, arch) for task, arch in TASK_ARCHS for family in FAMILIES]


def python_m_ttc(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real entry point, in a child process (one thread: tiny models, a busy machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ttc", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_refused(rc: int, out: str, err: str, *needles: str) -> None:
    """Exit status 2, nothing on stdout, exactly one stderr line `error: ...` naming the problem."""
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and out == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


# ---- the round trip through the real entry point ----------------------------------------------------


@pytest.mark.slow
def test_data_then_eval_data_round_trips_through_python_m_ttc(tmp_path, make_checkpoint):
    data = tmp_path / "ps.npz"
    made = python_m_ttc("data", "--task", "prefix_sums", "--size", 12, "--n", 9, "--seed", 4, "--out", data)
    assert made.returncode == 0 and made.stdout == "" and made.stderr == ""
    task, size, x, y = load_npz(data)
    gx, gy = get_task("prefix_sums").generate(12, 9, seed=4)
    assert (task, size) == ("prefix_sums", 12) and np.array_equal(x, gx) and np.array_equal(y, gy)

    ckpt = make_checkpoint("prefix_sums", "recursive", "conv1d")
    run = python_m_ttc("eval", "--checkpoint", ckpt, "--data", data, "--iters", 4, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert set(CONTRACT) <= set(result)
    assert (result["task"], result["size"], result["n"], result["iters"]) == ("prefix_sums", 12, 9, 4)
    assert len(result["accuracy"]) == len(result["residual"]) == 4


@pytest.mark.slow
def test_bad_input_through_python_m_ttc_gives_one_line_and_status_2(tmp_path, make_checkpoint):
    ckpt = make_checkpoint("prefix_sums", "recursive", "conv1d")
    bad = tmp_path / "bad.npz"
    x, y = get_task("prefix_sums").generate(8, 3, seed=0)
    np.savez(bad, task=np.array("prefix_sums"), size=np.array(8), inputs=x.astype(np.int64), targets=y)
    run = python_m_ttc("eval", "--checkpoint", ckpt, "--data", bad, "--iters", 2, "--json")
    assert_refused(run.returncode, run.stdout, run.stderr, "'inputs' must have dtype uint8, got int64")
    run = python_m_ttc("eval", "--checkpoint", ckpt, "--size", 8, "--iters", 0)
    assert_refused(run.returncode, run.stdout, run.stderr, "--iters must be in 1..5000, got 0")


# ---- the eval JSON contract, for every family and core ----------------------------------------------


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a - b|| / ||a|| per sample."""
    return (a - b).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)


def _independent_trace(ckpt, task_name: str, x: np.ndarray, y: np.ndarray, iters: int, **solver):
    """Per-iteration exact-match accuracy and mean relative residual ||z_k - z_{k-1}|| / ||z_k||, computed
    straight from the stream (for a DEQ under fixed-point iteration, where z_k = f(z_{k-1}), this is the
    solver's own ||f(z) - z|| / ||f(z)||)."""
    model, task = load_checkpoint(ckpt).model, get_task(task_name)
    acc, res, z_prev = [], [], None
    with torch.no_grad():
        settings = model.settings.updated(method=solver["method"]) if solver else None
        for st in model.stream(task.encode(torch.from_numpy(x)), iters, settings=settings):
            exact = (st.logits.argmax(1) == torch.from_numpy(y).long()).flatten(1).all(1)
            acc.append(exact.float().mean().item())
            if model.family_name == "ebm":  # its residual: the RMS change of y per cell, from y = 1/2 (a bit) or
                # the uniform answer 1/C over C > 2 classes
                start = 0.5 if st.z.shape[1] == 1 else 1.0 / st.z.shape[1]
                prev = torch.full_like(st.z, start) if z_prev is None else z_prev
                rms = (st.z - prev).flatten(1).norm(dim=1) / st.z[0].numel() ** 0.5
                rms = rms[torch.isfinite(st.residual)]  # a problem that stopped reports NaN from then on
                res.append(rms.mean().item() if rms.numel() else None)
            else:
                res.append(_rel(st.z, torch.zeros_like(st.z) if z_prev is None else z_prev).mean().item())
            z_prev = st.z
    return acc, res


@pytest.mark.parametrize("task,family,arch", CASES)
def test_random_model_of_every_family_and_core_saves_and_evaluates(cli, make_checkpoint, task, family, arch):
    ckpt = make_checkpoint(task, family, arch)
    size, iters = SMALL_SIZE[task], 4
    args = ("eval", "--checkpoint", ckpt, "--size", size, "--iters", iters, "--n", 6, "--seed", 2, "--json",
            "--precision", "fp32")
    r = cli(*args)
    assert r.rc == 0 and r.err == "", r.err
    out = json.loads(r.out)
    assert set(CONTRACT) <= set(out)
    assert (out["task"], out["family"], out["arch"]) == (task, family, arch)
    assert (out["size"], out["n"], out["iters"], out["device"]) == (size, 6, iters, "cpu")
    assert out["params"] == load_checkpoint(ckpt).model.num_params()
    depth = TINY["layers"] if family == "explicit" else iters  # explicit models report each layer
    assert len(out["accuracy"]) == len(out["residual"]) == depth
    assert out["final_accuracy"] == out["accuracy"][-1] and out["best_accuracy"] == max(out["accuracy"])
    assert out["accuracy"][out["best_iter"] - 1] == out["best_accuracy"]
    # one evaluation per iteration (an EBM also evaluates its energy's gradient at the start)
    assert out["nfe"] == depth + (family == "ebm") and out["seconds"] > 0
    assert all(r is None or (math.isfinite(r) and r >= 0) for r in out["residual"])
    # the numbers are the model's own: recompute them from its stream (DEQs with their plain solver, whose
    # iterates are the stream's states; Anderson's residual is taken at its internal mixed iterate)
    x, y = get_task(task).generate(size, 6, seed=2)
    solver = {"method": "fixed_point"} if family == "deq" else {}
    if solver:
        r = cli(*args, "--solver", "fixed_point")
        assert r.rc == 0, r.err
        out = json.loads(r.out)
    acc, res = _independent_trace(ckpt, task, x, y, iters, **solver)
    assert out["accuracy"] == pytest.approx(acc)
    assert out["residual"] == pytest.approx(res, rel=1e-4)


def test_eval_data_equals_eval_generating_the_same_problems(cli, make_checkpoint, tmp_path):
    ckpt = make_checkpoint("mazes", "recursive", "conv2d")
    assert cli("data", "--task", "mazes", "--size", 9, "--n", 7, "--seed", 5, "--out", tmp_path / "m.npz").rc == 0
    a = json.loads(cli("eval", "--checkpoint", ckpt, "--data", tmp_path / "m.npz", "--iters", 3, "--json").out)
    b = json.loads(cli("eval", "--checkpoint", ckpt, "--size", 9, "--n", 7, "--seed", 5, "--iters", 3, "--json").out)
    assert {k: a[k] for k in CONTRACT if k != "seconds"} == {k: b[k] for k in CONTRACT if k != "seconds"}


def test_eval_result_does_not_depend_on_the_batch_size(cli, make_checkpoint):
    ckpt = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    args = ("eval", "--checkpoint", ckpt, "--size", 9, "--n", 7, "--iters", 6, "--json")
    whole, split = json.loads(cli(*args).out), json.loads(cli(*args, "--batch", 2).out)
    assert split["accuracy"] == pytest.approx(whole["accuracy"])
    assert split["residual"] == pytest.approx(whole["residual"], rel=1e-5)
    assert split["nfe"] == whole["nfe"]


def test_eval_prints_a_readable_summary_without_json(cli, make_checkpoint):
    r = cli("eval", "--checkpoint", make_checkpoint("addition", "explicit", "conv1d"), "--size", 5, "--iters", 2)
    assert r.rc == 0 and "best accuracy" in r.out and "addition size 5" in r.out


def test_data_writes_exactly_the_out_path(cli, tmp_path):
    r = cli("data", "--task", "addition", "--size", 5, "--n", 3, "--out", tmp_path / "sums.bin")
    assert r.rc == 0 and [p.name for p in tmp_path.iterdir()] == ["sums.bin"]
    assert load_npz(tmp_path / "sums.bin")[:2] == ("addition", 5)


def test_eval_help_documents_the_ranges(cli):
    r = cli("eval", "--help")
    assert r.rc == 0
    text = " ".join(r.out.split())
    for rng in (
        "prefix_sums: 2..4096",
        "addition: 1..2048",
        "mazes: 5..401 (odd)",
        "--n 1..100000",
        "--iters 1..5000",
        "--tol in (0, 1)",
    ):
        assert rng in text, rng


# ---- every bad input of the issue, refused in one line ----------------------------------------------


def _npz(path, over: dict | None = None):
    """A file of 4 prefix_sums problems of size 8, valid unless over replaces (or, with None, drops) a key."""
    x, y = get_task("prefix_sums").generate(8, 4, seed=0)
    arrays = {"task": np.array("prefix_sums"), "size": np.array(8), "inputs": x, "targets": y, **(over or {})}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _even_maze_npz(path):
    """A maze file well-formed in every respect but its even size (shapes fit size 10)."""
    x, y = np.zeros((2, 3, 12, 12), dtype=np.uint8), np.zeros((2, 12, 12), dtype=np.uint8)
    np.savez(path, task=np.array("mazes"), size=np.array(10), inputs=x, targets=y)
    return path


def _forged(path, config_over: dict):
    """A prefix_sums recursive conv1d checkpoint whose config (and family/arch metadata) is edited."""
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    cfg = {**model.config.to_dict(), **config_over}
    meta = {"config": json.dumps(cfg), "family": cfg["family"], "arch": cfg["arch"]}
    path.write_bytes(forge_checkpoint(model, "prefix_sums", meta))
    return path


def _text(path):
    path.write_text("task,size\nprefix_sums,8\n")
    return path


def _pickled(path):
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    return path


def _data(c, *args):
    return ["data", *args, "--out", c["tmp"] / "out.npz"]


def _eval(ckpt, *args):
    return ["eval", "--checkpoint", ckpt, *args]


def _eval_data(c, **npz_over):
    return _eval(c["ps"], "--data", _npz(c["tmp"] / "d.npz", npz_over), "--iters", 2)


def _train(c, *args):
    return ["train", "--out", c["tmp"] / "t.safetensors", "--steps", 1, "--quiet", *args]


KNOWN_FAMILIES = "known families: explicit, recursive, deq"
KNOWN_ARCHS = "known archs: conv1d, conv2d, transformer"
U8 = np.uint8

# name: (the command line from the context, what the one error line must say)
BAD_INPUTS = {
    # unknown names, with the known ones listed
    "unknown task (data)": (
        lambda c: _data(c, "--task", "sorting", "--size", 8),
        ["unknown task 'sorting'; known tasks: prefix_sums, addition, mazes"],
    ),
    "unknown task (npz)": (lambda c: _eval_data(c, task=np.array("sorting")), ["unknown task 'sorting'"]),
    "unknown task (train)": (lambda c: _train(c, "--task", "sorting"), ["unknown task 'sorting'"]),
    "unknown family (checkpoint)": (
        lambda c: _eval(_forged(c["tmp"] / "f.safetensors", {"family": "lstm"}), "--size", 8, "--iters", 2),
        ["unknown family 'lstm'", KNOWN_FAMILIES],
    ),
    "unknown arch (checkpoint)": (
        lambda c: _eval(_forged(c["tmp"] / "a.safetensors", {"arch": "mlp"}), "--size", 8, "--iters", 2),
        ["unknown arch 'mlp'", KNOWN_ARCHS],
    ),
    "unknown family (train)": (lambda c: _train(c, "--family", "lstm"), ["unknown family 'lstm'", KNOWN_FAMILIES]),
    "unknown arch (train)": (lambda c: _train(c, "--arch", "mlp"), ["unknown arch 'mlp'", KNOWN_ARCHS]),
    "arch for another task (train)": (
        lambda c: _train(c, "--task", "mazes", "--arch", "conv1d", "--sizes", 9),
        ["arch 'conv1d' does not serve task mazes; archs for it: conv2d"],
    ),
    # even maze sizes
    "even maze size (data)": (lambda c: _data(c, "--task", "mazes", "--size", 10), ["size 10 is even", "5..401"]),
    "even maze size (eval)": (lambda c: _eval(c["mz"], "--size", 10, "--iters", 2), ["size 10 is even", "5..401"]),
    "even maze size (npz)": (
        lambda c: _eval(c["mz"], "--iters", 2, "--data", _even_maze_npz(c["tmp"] / "m.npz")),
        ["size 10 is even"],
    ),
    "even maze size (train)": (
        lambda c: _train(c, "--task", "mazes", "--arch", "conv2d", "--sizes", 10),
        ["size 10 is even"],
    ),
    # sizes, counts and budgets out of range
    "size too small (data)": (
        lambda c: _data(c, "--task", "prefix_sums", "--size", 1),
        ["size 1 out of range; accepted: 2..4096"],
    ),
    "maze too small (data)": (
        lambda c: _data(c, "--task", "mazes", "--size", 3),
        ["size 3 out of range; accepted: 5..401"],
    ),
    "size too large (eval)": (lambda c: _eval(c["ps"], "--size", 4097, "--iters", 2), ["size 4097", "2..4096"]),
    "size too large (npz)": (lambda c: _eval_data(c, size=np.array(5000)), ["size 5000 out of range", "2..4096"]),
    "size not an integer": (lambda c: _eval(c["ps"], "--size", "eight", "--iters", 2), ["--size", "'eight'"]),
    "size missing without data": (lambda c: _eval(c["ps"], "--iters", 2), ["--size is required", "2..4096"]),
    "count zero (data)": (
        lambda c: _data(c, "--task", "addition", "--size", 4, "--n", 0),
        ["--n must be in 1..100000, got 0"],
    ),
    "count too large (eval)": (
        lambda c: _eval(c["ps"], "--size", 8, "--iters", 2, "--n", 100_001),
        ["--n must be in 1..100000, got 100001"],
    ),
    "problems too large (data)": (
        lambda c: _data(c, "--task", "mazes", "--size", 401, "--n", 1000),
        ["byte limit", "at most 826 problems"],
    ),
    "budget zero": (lambda c: _eval(c["ps"], "--size", 8, "--iters", 0), ["--iters must be in 1..5000, got 0"]),
    "budget too large": (lambda c: _eval(c["ps"], "--size", 8, "--iters", 5001), ["--iters must be in 1..5000"]),
    "budget not an integer": (lambda c: _eval(c["ps"], "--size", 8, "--iters", "ten"), ["must be an integer"]),
    "tolerance out of range": (
        lambda c: _eval(c["deq"], "--size", 8, "--iters", 2, "--tol", 2),
        ["--tol must be in (0, 1)"],
    ),
    "solver options on a recursive model": (
        lambda c: _eval(c["ps"], "--size", 8, "--iters", 2, "--tol", 0.01),
        ["DEQ checkpoints only"],
    ),
    # malformed problem files
    "npz missing keys": (lambda c: _eval_data(c, targets=None), ["missing keys ['targets']"]),
    "npz wrong dtype": (
        lambda c: _eval_data(c, inputs=np.zeros((4, 8), dtype=np.float32)),
        ["'inputs' must have dtype uint8, got float32"],
    ),
    "npz wrong shape": (
        lambda c: _eval_data(c, targets=np.zeros((4, 9), dtype=U8)),
        ["'targets' must have shape (n, 8) for prefix_sums size 8, got (4, 9)"],
    ),
    "npz counts differ": (lambda c: _eval_data(c, targets=np.zeros((3, 8), dtype=U8)), ["same positive count"]),
    "npz values outside 0/1": (
        lambda c: _eval_data(c, inputs=np.full((4, 8), 2, dtype=U8)),
        ["'inputs' must hold only 0 and 1, found 2"],
    ),
    "npz not an npz": (
        lambda c: _eval(c["ps"], "--iters", 2, "--data", _text(c["tmp"] / "x.npz")),
        ["not a readable .npz"],
    ),
    "npz missing file": (lambda c: _eval(c["ps"], "--iters", 2, "--data", c["tmp"] / "no.npz"), ["does not exist"]),
    # checkpoints and paths
    "checkpoint of another task than the data": (
        lambda c: _eval(c["mz"], "--iters", 2, "--data", _npz(c["tmp"] / "p.npz")),
        ["checkpoint is for task 'mazes' but the data is 'prefix_sums'"],
    ),
    "checkpoint is a pickle": (
        lambda c: _eval(_pickled(c["tmp"] / "p.safetensors"), "--size", 8, "--iters", 2),
        ["not a TTC checkpoint"],
    ),
    "checkpoint missing": (
        lambda c: _eval(c["tmp"] / "no.safetensors", "--size", 8, "--iters", 2),
        ["does not exist"],
    ),
    "unwritable data path": (
        lambda c: ["data", "--task", "addition", "--size", 4, "--out", c["tmp"] / "no" / "a.npz"],
        ["cannot write"],
    ),
    "unknown command": (lambda c: ["evaluate"], ["invalid choice"]),
}


@pytest.fixture
def ctx(tmp_path, make_checkpoint):
    return {
        "tmp": tmp_path,
        "ps": make_checkpoint("prefix_sums", "recursive", "conv1d"),
        "mz": make_checkpoint("mazes", "recursive", "conv2d"),
        "deq": make_checkpoint("prefix_sums", "deq", "conv1d", norm=True),
    }


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_in_one_line_with_status_2(cli, ctx, case):
    make_args, needles = BAD_INPUTS[case]
    r = cli(*make_args(ctx))
    assert_refused(r.rc, r.out, r.err, *needles)


def test_valid_versions_of_the_bad_inputs_are_accepted(cli, ctx):
    # the refusals above are about the value, not the command: the same commands with good values work
    assert cli(*_eval_data(ctx)).rc == 0
    assert cli(*_data(ctx, "--task", "mazes", "--size", 9, "--n", 2)).rc == 0
    assert cli(*_eval(ctx["mz"], "--data", ctx["tmp"] / "out.npz", "--iters", 2)).rc == 0
    assert cli(*_eval(ctx["deq"], "--size", 8, "--iters", 2, "--tol", 0.01)).rc == 0
    save_npz(ctx["tmp"] / "s.npz", "prefix_sums", 8, *get_task("prefix_sums").generate(8, 2, seed=0))
    assert cli(*_eval(ctx["ps"], "--data", ctx["tmp"] / "s.npz", "--iters", 2)).rc == 0


# ---- the instrumented run behind eval ---------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_yields_one_record_per_iteration_with_per_sample_data(family):
    from ttc.engine.probe import probe

    task = get_task("addition")
    x, y = task.generate(6, 5, seed=1)
    recs = list(probe(tiny_model("addition", family, "conv1d"), task, x, y, 4))
    assert [r.k for r in recs] == list(range(1, 1 + (TINY["layers"] if family == "explicit" else 4)))
    for r in recs:
        assert r.correct.shape == r.residuals.shape == r.converged.shape == r.diverged.shape == (5,)
        assert r.preds.shape == (5, 7) and r.preds.dtype == torch.uint8
        assert r.accuracy == pytest.approx(r.correct.mean()) and 0.0 <= r.bit_accuracy <= 1.0
        assert r.memory_kind == "cpu_tensor_bytes" and r.memory_bytes > x.nbytes
    if family != "ebm":  # a first step from zeros changes the state by all of it; an EBM starts at y = 1/2
        assert recs[0].residuals == pytest.approx(np.ones(5))
    assert recs[-1].elapsed >= recs[0].elapsed > 0


def test_probe_stops_early_once_every_sample_has_converged():
    from ttc.engine.probe import probe

    task = get_task("prefix_sums")
    x, y = task.generate(8, 4, seed=0)
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    assert len(list(probe(model, task, x, y, 30))) == 30
    # the first residual is 1 (z_0 = 0); a tolerance just under it: all converge at the second step
    recs = list(probe(model, task, x, y, 30, early_stop=True, tol=0.99))
    assert len(recs) == 2 and recs[-1].converged.all()
    assert (recs[-1].residuals < 0.99).all()  # the step that converges reports its residual


@pytest.mark.parametrize("iters", [0, 5001])
def test_probe_refuses_a_budget_out_of_range(iters):
    from ttc.engine.probe import probe

    task = get_task("prefix_sums")
    x, y = task.generate(8, 1, seed=0)
    with pytest.raises(ValueError, match="1..5000"):
        next(probe(tiny_model("prefix_sums", "recursive", "conv1d"), task, x, y, iters))


def test_a_familys_own_training_option_is_a_train_flag(cli, tmp_path, monkeypatch):
    """A family's own training option (a plugin's too) is a `train` flag, listed in --help with its family and
    default, and reaches the card; on another family it is refused in one line."""
    from models import RecursiveModel, registry

    class Tempered(RecursiveModel):
        order = 99
        train_option_defaults = {"temperature": 0.5}

    monkeypatch.setitem(registry._FAMILIES, "tempered_test", Tempered)
    Tempered.family_name = "tempered_test"
    r = cli("train", "--help")
    assert r.rc == 0 and "--temperature" in r.out and "tempered_test" in r.out
    out = tmp_path / "t.safetensors"
    r = cli("train", "--family", "tempered_test", "--temperature", "2.5", "--width", 4, "--depth", 1, "--layers", 2,
            "--sizes", 4, "--batch", 2, "--steps", 1, "--val-every", 1, "--val-n", 2, "--quiet", "--out", out)
    assert r.rc == 0, r.err
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["family_options"] == {"temperature": 2.5}
    r = cli("train", "--family", "recursive", "--temperature", "2", "--out", tmp_path / "u.safetensors")
    assert r.rc == 2 and r.err.startswith("error: --temperature is not an option of family recursive")
    assert not (tmp_path / "u.safetensors").exists()


def test_under_torchrun_only_rank_0_prints(cli, tmp_path, monkeypatch):
    """A second rank's progress and validation lines would repeat rank 0's: it prints nothing."""
    monkeypatch.setenv("RANK", "1")
    r = cli("train", "--width", 4, "--depth", 1, "--layers", 2, "--sizes", 4, "--batch", 2, "--steps", 2,
            "--val-every", 1, "--val-n", 2, "--out", tmp_path / "r1.safetensors")
    assert r.rc == 0 and r.out == "" and r.err == "", (r.out, r.err)
