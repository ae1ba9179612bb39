"""Memory: implicit and jfb keep a constant graph, unrolled grows linearly; the `memory` command contract."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ttc.engine.memory import SavedTensorMeter, measure_step

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped_deq():
    """A randomly initialised DEQ of the zoo's prefix-sums size (conv1d, width 64, depth 2, group norm),
    on a small batch: the saved bytes scale with batch x length, the ratios do not."""
    from models import ModelConfig, build_model
    from tasks import get_task

    task = get_task("prefix_sums")
    cfg = ModelConfig(family="deq", arch="conv1d", in_channels=task.in_channels, width=64, depth=2, layers=30,
                      norm=True)
    model = build_model(cfg, seed=0)
    model.settings = model.settings.updated(backward_solver={"max_iter": 10})  # short backward solves (untrained)
    xs, ys = task.generate(8, 2, seed=0)
    return model, task.encode(torch.from_numpy(xs)), torch.from_numpy(ys).long()


@pytest.fixture(scope="module")
def rows(shipped_deq):
    model, x, y = shipped_deq
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {(m, k): measure_step(model, x, y, m, k) for m in ("unrolled", "implicit", "jfb") for k in (10, 100, 1000)}
    torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_implicit_and_jfb_save_the_same_bytes_at_10_and_1000_iterations(rows):
    for mode in ("implicit", "jfb"):
        assert rows[(mode, 10)]["saved_bytes"] == rows[(mode, 1000)]["saved_bytes"] > 0, mode
        assert rows[(mode, 1000)]["nfe"] > rows[(mode, 10)]["nfe"]  # the forward did run longer
    assert rows[("implicit", 10)]["saved_bytes"] == rows[("jfb", 10)]["saved_bytes"]


def test_unrolled_runs_exactly_the_budget_and_grows_linearly(rows):
    s = {k: rows[("unrolled", k)]["saved_bytes"] for k in (10, 100, 1000)}
    assert [rows[("unrolled", k)]["nfe"] for k in (10, 100, 1000)] == [10, 100, 1000]
    per_step_a, per_step_b = (s[100] - s[10]) / 90, (s[1000] - s[100]) / 900
    assert per_step_a > 0 and abs(per_step_b - per_step_a) / per_step_a < 1e-3, s


def test_unrolled_saves_at_least_20x_implicit_at_100_iterations(rows, record_property):
    ratio = rows[("unrolled", 100)]["saved_bytes"] / rows[("implicit", 100)]["saved_bytes"]
    record_property("unrolled_over_implicit_at_100", ratio)
    assert ratio >= 20


def test_peak_bytes_is_null_on_the_cpu(rows):
    assert all(r["peak_bytes"] is None for r in rows.values())


def test_peak_bytes_follow_the_device(shipped_deq):
    """On CUDA the peak above the baseline grows with unrolled depth and implicit stays below it; on the
    CPU there is no peak reading (null), whatever the mode. Runs on every machine, never skipped."""
    model, x, y = shipped_deq
    if not torch.cuda.is_available():
        assert measure_step(model, x, y, "unrolled", 10)["peak_bytes"] is None
        return
    model = model.cuda()
    try:
        a = measure_step(model, x.cuda(), y.cuda(), "unrolled", 10)
        b = measure_step(model, x.cuda(), y.cuda(), "unrolled", 100)
        c = measure_step(model, x.cuda(), y.cuda(), "implicit", 100)
    finally:
        model.cpu()
    assert 0 < a["peak_bytes"] < b["peak_bytes"] and c["peak_bytes"] < b["peak_bytes"]
    assert b["saved_bytes"] == measure_step(model, x, y, "unrolled", 100)["saved_bytes"]  # device independent


def test_meter_counts_each_storage_once_and_skips_parameters_and_inputs():
    w = nn.Parameter(torch.ones(1000))
    x = torch.ones(1000)
    with SavedTensorMeter(exclude=[w, x]) as meter:
        h = x * w  # saves x and w: both excluded
    assert meter.bytes == 0
    with SavedTensorMeter(exclude=[w, x]) as meter:
        t = (x * w).exp()  # exp saves its output t
        u = t * t  # saves t twice: one storage
        u.sum()
    assert meter.bytes == 4000 and meter.count == 1
    del h


def test_memory_command_prints_the_contract_json(cli, make_checkpoint):
    path = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    r = cli("memory", "--checkpoint", path, "--size", 8, "--iters", "5,20", "--modes", "unrolled,implicit,jfb",
            "--batch", 2, "--json")
    assert r.rc == 0, r.err
    out = json.loads(r.out)
    assert [(o["mode"], o["iters"]) for o in out] == [(m, k) for m in ("unrolled", "implicit", "jfb") for k in (5, 20)]
    for o in out:
        assert {"mode", "iters", "saved_bytes", "peak_bytes", "seconds"} <= set(o)
        assert isinstance(o["saved_bytes"], int) and o["peak_bytes"] is None and o["seconds"] > 0
    assert out[1]["saved_bytes"] > out[0]["saved_bytes"] > out[2]["saved_bytes"] == out[3]["saved_bytes"]


@pytest.mark.parametrize("args,msg", [
    (("--iters", "0"), "--iters"),
    (("--iters", "10,x"), "--iters"),
    (("--modes", "unrolled,neumann"), "--modes"),
    (("--size", "1"), "size 1"),
    (("--batch", "0"), "--batch"),
    (("--solver", "newton"), "--solver"),
])
def test_memory_command_rejects_bad_values_with_one_error_line(cli, make_checkpoint, args, msg):
    path = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    base = {"--size": "8", "--iters": "5"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    r = cli("memory", "--checkpoint", path, *[v for kv in base.items() for v in kv])
    assert r.rc == 2 and r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.err


def test_memory_command_refuses_non_deq_and_unaffordable_runs(cli, make_checkpoint, monkeypatch):
    r = cli("memory", "--checkpoint", make_checkpoint("prefix_sums", "recursive", "conv1d"), "--size", 8)
    assert r.rc == 2 and r.err.startswith("error:") and "DEQ" in r.err
    import ttc.engine.memory

    monkeypatch.setattr(ttc.engine.memory, "memory_budget", lambda device: 1000)
    path = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    r = cli("memory", "--checkpoint", path, "--size", 8, "--iters", 50)
    assert r.rc == 2 and r.err.startswith("error: unrolled at 50 iterations") and len(r.err.splitlines()) == 1
