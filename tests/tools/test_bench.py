"""Benchmarks and findings: `python -m ttc bench` entries say what they compare and give finite positive ratios;
`python -m ttc report` writes a summary, results and figures for whatever checkpoints a folder holds; the
probe's cheaper instrumentation keeps its records."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ttc.tools import bench, report

ROOT = Path(__file__).resolve().parents[2]


def check_entries(result: dict) -> None:
    assert result["entries"], "no bench entries"
    for e in result["entries"]:
        assert e["group"] in bench.GROUPS
        assert e["name"] and e["compares"], e
        if e["ratio"] is None:
            assert e.get("skipped"), f"{e['name']}: no ratio and no reason"
            continue
        r = e["ratio"]
        assert r["repeats"] >= 1
        for k in ("min", "median", "max"):
            assert math.isfinite(r[k]) and r[k] > 0, (e["name"], r)
        assert r["min"] <= r["median"] <= r["max"]


@pytest.mark.slow
def test_bench_quick_json_runs_every_group_with_finite_positive_ratios():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "ttc", "bench", "--quick", "--json", "--threads", "1", "--device", "cpu",
                        "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout)
    assert result["quick"] is True
    assert {"cpu", "cores", "torch", "device"} <= set(result["machine"])
    check_entries(result)
    groups = {e["group"] for e in result["entries"]}
    assert {"solvers", "torchdeq", "memory"} <= groups  # a random DEQ stands in when the folder has none
    if result["checkpoints"]:
        assert {"overhead", "allocator", "throughput", "dashboard"} <= groups
    measured = {e["group"] for e in result["entries"] if e["ratio"] is not None}
    assert {"solvers", "memory"} <= measured
    table = bench.format_table(result)  # the plain-text table of the same result: a line per entry at least
    assert len(table) > len(result["entries"]) and all(e["name"] in "\n".join(table) for e in result["entries"])
    if platform.libc_ver()[0] == "glibc":  # the CLI tuned the allocator, and the record says so
        assert result["machine"]["allocator"].startswith("glibc tuned")
        alloc = [e for e in result["entries"] if e["group"] == "allocator"]
        assert all(e["tuned_as"].startswith("glibc tuned") for e in alloc)


def test_the_allocator_is_left_alone_when_asked_and_when_glibc_is_already_told():
    from ttc.engine.runtime import tune_allocator

    assert tune_allocator({"TTC_MALLOC": "0"}).startswith("default ($TTC_MALLOC=0)")
    assert "environment sets glibc's own" in tune_allocator({"MALLOC_TRIM_THRESHOLD_": "1000"})
    assert "environment sets glibc's own" in tune_allocator({"MALLOC_MMAP_THRESHOLD_": "1000"})
    probe = "from ttc.engine.runtime import tune_allocator; print(tune_allocator())"
    p = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "TTC_MALLOC"))})
    assert p.returncode == 0, p.stderr[-2000:]
    if platform.libc_ver()[0] == "glibc" and sys.platform.startswith("linux"):
        assert p.stdout.startswith("glibc tuned: blocks under 32 MiB")
    else:
        assert p.stdout.startswith("default (not Linux with glibc)")


def test_bench_without_a_deq_checkpoint_uses_a_random_deq_and_says_so(make_checkpoint, one_thread):
    folder = make_checkpoint("prefix_sums", "recursive", "conv1d").parent
    result = bench.run_bench(quick=True, folder=folder, device="cpu", groups=("solvers", "memory"))
    check_entries(result)
    assert any("random" in n and "no DEQ checkpoint" in n for n in result["notes"])
    assert all(e["random_model"] for e in result["entries"])
    mem = {e["name"].split(":")[0]: e for e in result["entries"] if e["group"] == "memory"}
    assert mem["implicit memory vs iterations"]["ratio"]["median"] == pytest.approx(1.0)
    assert mem["unrolled vs implicit at 100 iterations"]["ratio"]["median"] >= 20


def test_bench_measures_each_checkpoint_of_the_folder(make_checkpoint, one_thread):
    make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    folder = make_checkpoint("prefix_sums", "recursive", "conv1d").parent
    result = bench.run_bench(quick=True, folder=folder, device="cpu",
                             groups=("overhead", "solvers", "torchdeq", "throughput"))
    check_entries(result)
    assert not any("random" in n for n in result["notes"])
    deq = [e for e in result["entries"] if e["group"] in ("solvers", "torchdeq")]
    assert deq and all(not e["random_model"] and "prefix_sums-deq" in e["name"] for e in deq)
    tp = next(e for e in result["entries"] if e["group"] == "throughput")
    assert tp["setup"]["sizes"] == [32, 128]  # the training size (no card: the task's default) and 4x


def test_bench_entry_says_whether_the_median_meets_the_aim():
    assert bench.entry("g", "n", "c", [0.9, 1.0, 1.2], aim="<= 1.10")["meets_aim"] is True
    assert bench.entry("g", "n", "c", [1.2, 1.3, 1.0], aim="<= 1.10")["meets_aim"] is False
    assert bench.entry("g", "n", "c", [25.0], aim=">= 20")["meets_aim"] is True
    assert bench.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "repeats": 3}


def test_repeats_that_disagree_are_flagged_in_the_table():
    """'5.33 [0.29, 10.4] (n=2)' on a busy machine: the table says the entry is not to be trusted."""
    calm = bench.entry("overhead", "calm", "c", [1.0, 1.1, 1.05], aim="<= 1.10")
    busy = bench.entry("overhead", "busy", "c", [0.29, 10.4], aim="<= 1.10")
    assert calm["trusted"] is True and busy["trusted"] is False
    # counts (a solver's evaluations on three batches of problems) differ because their problems do: no flag
    assert "trusted" not in bench.entry("solvers", "nfe", "c", [0.157, 0.163, 1.0])
    assert bench.entry("torchdeq", "time", "c", [0.29, 10.4], timed=True)["trusted"] is False
    result = {"machine": {"cpu": "x", "cores": 2, "torch": "t", "torch_threads": 1, "device": "cpu",
                          "load_average": 9.0}, "quick": True, "seconds": 1.0, "entries": [calm, busy], "notes": []}
    lines = bench.format_table(result)
    flagged = [i for i, line in enumerate(lines) if "NOT TO BE TRUSTED" in line]
    assert len(flagged) == 1 and "busy" in lines[flagged[0] - 2] and "35.9x" in lines[flagged[0]]


def test_bench_refuses_an_unknown_group_in_one_line(cli):
    r = cli("bench", "--quick", "--groups", "overhead,speed")
    assert r.rc == 2 and r.err.startswith("error: ") and r.err.count("\n") == 1 and "speed" in r.err


def test_scaled_sizes_stay_in_range_and_odd_for_mazes():
    assert bench.scaled_size("mazes", 9, 4) == 37
    assert bench.scaled_size("prefix_sums", 32, 16) == 512
    assert bench.scaled_size("prefix_sums", 1024, 16) == 4096


# --- report --------------------------------------------------------------------------------------------------

def quick_report(cli, folder, out, task: str) -> tuple[dict, dict]:
    """`report --quick` of one task's checkpoints in folder, html figures: (results.json, its one task entry)."""
    r = cli("report", "--quick", "--checkpoints", folder, "--out", out, "--tasks", task, "--formats", "html",
            "--device", "cpu", "--quiet")
    assert r.rc == 0, r.err
    res = json.loads((out / "results.json").read_text())
    (entry,) = res["tasks"]
    return res, entry


def test_report_quick_on_tiny_checkpoints_writes_summary_results_and_figures(cli, make_checkpoint, tmp_path,
                                                                               one_thread):
    for fam in ("explicit", "recursive", "deq"):
        folder = make_checkpoint("prefix_sums", fam, "conv1d").parent
    out = tmp_path / "out"
    res, task = quick_report(cli, folder, out, "prefix_sums")
    assert task["task"] == "prefix_sums"
    fams = {(c["family"], c["factor"]) for c in task["curves"]}
    assert {("explicit", 1), ("explicit", 4), ("recursive", 1), ("recursive", 4), ("deq", 1), ("deq", 4)} <= fams
    for c in task["curves"]:
        assert len(c["accuracy"]) == len(c["residual"]) >= 1
        assert 1 <= c["best_iter"] <= len(c["accuracy"]) and c["n"] >= 1
        if c["family"] == "explicit":
            assert len(c["accuracy"]) == 3  # its depth, whatever the budget
    assert set(task["scaling"]) == {n for n in res["checkpoints"] if "explicit" not in n}
    assert {r["mode"] for r in res["memory"]} == {"unrolled", "implicit", "jfb"}
    assert all("deq" in r["model"] and "random" not in r["model"] for r in res["memory"])
    summary = (out / "summary.md").read_text()
    assert "## prefix_sums" in summary and "Training memory" in summary and "Quick run" in summary
    for stem in ("prefix_sums-accuracy", "prefix_sums-residual", "prefix_sums-iterations-vs-size"):
        assert (out / "figures" / f"{stem}.html").is_file()
        assert f"figures/{stem}.html" in summary
    assert (out / "figures" / "plotly.min.js").is_file()  # the pages open offline

    again = tmp_path / "again"
    r = cli("report", "--out", again, "--from-results", out / "results.json", "--formats", "html")
    assert r.rc == 0, r.err
    assert json.loads((again / "results.json").read_text())["tasks"] == res["tasks"]
    assert "rendered again from the run's results.json" in (again / "summary.md").read_text()
    assert (again / "figures" / "prefix_sums-accuracy.html").is_file()


def test_report_update_reruns_the_tasks_asked_and_keeps_the_others(cli, make_checkpoint, tmp_path, one_thread):
    make_checkpoint("prefix_sums", "recursive", "conv1d")
    folder = make_checkpoint("addition", "recursive", "conv1d").parent
    out = tmp_path / "out"
    base = ("report", "--quick", "--checkpoints", folder, "--out", out, "--formats", "html", "--device", "cpu",
            "--quiet")
    r = cli("report", "--update", "--out", tmp_path / "none")
    assert r.rc == 2 and r.err.startswith("error: ") and "--update merges into the report in --out" in r.err
    assert cli(*base, "--tasks", "prefix_sums,addition").rc == 0
    first = json.loads((out / "results.json").read_text())
    r = cli(*base, "--tasks", "addition", "--update")
    assert r.rc == 0, r.err
    second = json.loads((out / "results.json").read_text())
    assert [t["task"] for t in second["tasks"]] == ["prefix_sums", "addition"]
    assert second["tasks"][0] == first["tasks"][0]  # kept as the first run made it
    assert [s["tasks"] for s in second["sections"]] == [["prefix_sums"], ["addition"]]  # who made which task
    assert "--update" in second["sections"][1]["command"]
    assert {r["task"] for r in second["analysis"]["rows"]} == {"prefix_sums", "addition"}
    assert len(second["analysis"]["rows"]) == len(first["analysis"]["rows"])
    summary = (out / "summary.md").read_text()
    assert "Made task by task" in summary and "## prefix_sums" in summary and "## addition" in summary
    r = cli("report", "--update", "--out", out, "--from-results", out / "results.json")
    assert r.rc == 2 and "pass one of them" in r.err


def test_report_on_sudoku_runs_its_blank_counts_and_groups_by_propagation_rounds(cli, make_checkpoint, tmp_path,
                                                                                   one_thread):
    folder = make_checkpoint("sudoku", "recursive", "relational").parent
    out = tmp_path / "out"
    res, task = quick_report(cli, folder, out, "sudoku")
    assert sorted({c["size"] for c in task["curves"]}) == [45, 48, 52]  # the training size, then its ladder
    groups = [d for d in res["difficulty"] if d.get("measured")]
    assert groups and {d["measure"] for d in groups} == {"propagation_rounds"}
    assert all(0 <= d["accuracy"] <= 1 and d["n"] >= 1 for d in groups)
    assert sum(d["n"] for d in groups if d["size"] == groups[0]["size"]) >= 8
    summary = (out / "summary.md").read_text()
    assert "## sudoku" in summary and "Accuracy against measured difficulty" in summary


def test_report_caps_a_costly_size_and_says_so(make_checkpoint):
    from ttc.engine.checkpoint import load_checkpoint

    ck = load_checkpoint(make_checkpoint("prefix_sums", "recursive", "conv1d"))
    cfg = report.report_config(quick=True)
    per_problem = 50 * report.iteration_cost(ck, 512)
    tight = type(cfg)(**{**cfg.__dict__, "cost_cap": cfg.n_min * per_problem / 3})
    run = report.plan_run(ck, 32, 16, lambda size: 50, tight)
    assert 32 <= run.size < 512 and run.n >= tight.n_min
    assert "512" in run.note and str(run.size) in run.note
    roomy = report.plan_run(ck, 32, 16, lambda size: 50, cfg)
    assert roomy.size == 512 and not roomy.note


def test_report_figure_export_says_why_static_formats_are_missing(monkeypatch, tmp_path):
    import plotly.graph_objects as go

    monkeypatch.setattr(report.export, "static_export_status", lambda: (False, "no Chromium here"))
    files, why = report.write_figure(go.Figure(), tmp_path, "f", ("png", "svg", "html"))
    assert files == ["f.html"] and len(why) == 2 and all("no Chromium here" in w for w in why)


def test_report_refuses_an_unknown_task_in_one_line(cli, tmp_path):
    r = cli("report", "--out", tmp_path, "--tasks", "prefix_sums,sorting")
    assert r.rc == 2 and r.err.startswith("error: ") and r.err.count("\n") == 1 and "sorting" in r.err


def test_scaling_fit_recovers_a_linear_law():
    def curve(size, k, best=1.0):
        acc = [0.0] * (k - 1) + [best] * 5
        return report.Curve(checkpoint="c", family="recursive", arch="conv1d", task="prefix_sums", size=size,
                            factor=1, n=10, budget=len(acc), accuracy=acc, residual=[None] * len(acc),
                            nfe=list(range(1, len(acc) + 1)), seconds=0.0, stop="converged", converged=10,
                            diverged=0)
    fit = report.scaling_fit([curve(32, 8), curve(64, 16), curve(128, 32), curve(256, 5, best=0.2)])
    assert fit["exponent"] == pytest.approx(1.0) and fit["sizes"] == [32, 64, 128]


# --- the probe's cheaper instrumentation -----------------------------------------------------------------------

def test_probe_finiteness_from_the_norm_matches_a_full_scan():
    from ttc.engine.records import _finite_rows

    z = torch.ones(4, 3, 5)
    z[1, 0, 0] = float("nan")
    z[2, 2, 4] = float("inf")
    z[3] = 1e30  # finite entries whose float32 norm overflows: the full scan decides
    zn = z.flatten(1).norm(dim=1)
    assert _finite_rows(z, zn).tolist() == torch.isfinite(z.flatten(1)).all(dim=1).tolist() == [True, False, False,
                                                                                                   True]


def test_probe_packed_host_copy_round_trips_every_dtype():
    from ttc.engine.records import _pack_to_host, _to_host

    g = torch.Generator().manual_seed(0)
    fields = {"acc": torch.rand(6, generator=g).mean(), "correct": torch.rand(6, generator=g) > 0.5,
              "res": torch.tensor([0.5, float("nan"), 1e-30, 2.0, 0.0, 3.0]),
              "preds": torch.randint(0, 2, (6, 7), dtype=torch.uint8, generator=g), "conv": torch.zeros(6).bool()}
    packed, direct = _pack_to_host(fields), _to_host(fields)
    for k in fields:
        assert packed[k].dtype == direct[k].dtype and packed[k].shape == direct[k].shape
        np.testing.assert_array_equal(packed[k], direct[k])


def test_probe_flags_a_blown_up_recursive_model_as_diverged():
    from conftest import tiny_model

    from tasks import get_task
    from ttc.engine.probe import probe

    model = tiny_model("prefix_sums", "recursive", "conv1d")
    with torch.no_grad():
        for p in model.block.parameters():
            p.mul_(40)
    task = get_task("prefix_sums")
    x, y = task.generate(9, 6, 3)
    last = list(probe(model, task, x, y, 25))[-1]
    assert last.diverged.all() and not last.converged.any() and math.isnan(last.residual)



@pytest.mark.parametrize("classes, spatial, masked", [(2, (7,), False), (2, (3, 4), True), (3, (5,), True)])
def test_cells_on_host_match_the_device_computation_for_every_iteration_of_a_batch(classes, spatial, masked):
    from ttc.engine.records import _cells_on_device, cells_on_host

    g = torch.Generator().manual_seed(1)
    B = 6
    logits = [torch.randn(B, classes, *spatial, generator=g) for _ in range(4)]
    logits[0][0, 1] = logits[0][0, 0]  # ties: class 0, as argmax says
    y = torch.randint(0, classes, (B, *spatial), generator=g)
    y[1] = logits[2].argmax(dim=1)[1]  # some exact matches
    mask = (torch.rand(B, *spatial, generator=g) > 0.3) if masked else None
    if mask is not None:
        y = y * mask
    y_host = (y.flatten(1).numpy(), y.flatten(1).numpy().astype(bool))
    mask_host = None if mask is None else mask.flatten(1).numpy()
    for batch in (logits[:1], logits):
        host = cells_on_host(batch, y_host, mask_host, cell_error=True)
        assert len(host) == len(batch)
        for lg, h in zip(batch, host, strict=True):
            d = _cells_on_device(lg, y, mask, cell_error=True)
            np.testing.assert_array_equal(h["correct"], d["correct"].numpy())
            assert int(h["bits"]) == int(d["bits"])
            np.testing.assert_array_equal(h["preds"], d["preds"].numpy())
            assert h["preds"].dtype == np.uint8 and h["conf"].dtype == np.float32
            np.testing.assert_allclose(h["conf"], d["conf"].numpy(), rtol=1e-5)
            np.testing.assert_allclose(h["cell_error"], d["cell_error"].numpy().reshape(-1), rtol=1e-6)
    assert host[2]["correct"][1] or masked  # the planted match is found (a mask may hide part of it)


@pytest.mark.parametrize("family, tol", [("recursive", 0.05), ("explicit", 0.65), ("deq", 1e-2), ("memory", 0.05),
                                         ("blown-up recursive", 0.05)])
def test_probe_records_do_not_depend_on_how_many_iterations_a_flush_makes(monkeypatch, family, tol):
    from conftest import tiny_model

    from tasks import get_task
    from ttc.engine import probe as probe_mod

    model = tiny_model("prefix_sums", family.split()[-1], "conv1d")
    if family.startswith("blown-up"):  # states overflow to inf and NaN part of the way: divergence at flushes
        with torch.no_grad():
            for p in model.block.parameters():
                p.mul_(40)
    task = get_task("prefix_sums")
    x, y = task.generate(9, 7, 4)
    runs = []
    # every iteration, by threes, all at the end, each with and without the spare core's worker; early stop
    # settles convergence after every iteration instead
    for flush_s, flush_max, early_stop, pipeline in (
            (0.0, 1, False, False), (1e9, 3, False, False), (1e9, 10**6, False, False), (0.0, 1, False, True),
            (1e9, 3, False, True), (1e9, 10**6, False, True), (1e9, 3, True, True)):
        monkeypatch.setattr(probe_mod, "FLUSH_S", flush_s)
        monkeypatch.setattr(probe_mod, "FLUSH_MAX", flush_max)
        monkeypatch.setattr(probe_mod, "PIPELINE", pipeline)
        runs.append(list(probe_mod.probe(model, task, x, y, 12, early_stop=early_stop, tol=tol, cell_error=True)))
    first = runs[0]
    if family.startswith("blown-up"):
        assert not first[0].diverged.any() and first[-1].diverged.all()
    else:
        assert any(r.converged.any() and not r.converged.all() for r in first)  # the bookkeeping has work to do
    for other in runs[1:]:
        assert [r.k for r in other] == [r.k for r in first][: len(other)]
        for a, b in zip(first, other, strict=False):
            assert (a.accuracy, a.nfe, a.bit_accuracy, a.memory_bytes) == (b.accuracy, b.nfe, b.bit_accuracy,
                                                                           b.memory_bytes)
            assert a.residual == b.residual or (math.isnan(a.residual) and math.isnan(b.residual))
            for f in ("correct", "converged", "diverged", "residuals", "confidence", "cell_error"):
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
            assert torch.equal(a.preds, b.preds)


def test_probe_closed_while_its_worker_prepares_a_batch_leaves_the_next_run_intact(monkeypatch):
    from conftest import tiny_model

    from tasks import get_task
    from ttc.engine import probe as probe_mod

    monkeypatch.setattr(probe_mod, "PIPELINE", True)
    monkeypatch.setattr(probe_mod, "FLUSH_S", 1e9)
    monkeypatch.setattr(probe_mod, "FLUSH_MAX", 2)
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    task = get_task("prefix_sums")
    x, y = task.generate(9, 5, 2)
    whole = list(probe_mod.probe(model, task, x, y, 10))
    run = probe_mod.probe(model, task, x, y, 10)
    first = next(run)  # made at the second flush, while the worker prepares iterations 3 and 4
    run.close()  # a Stop: the batch in flight is dropped
    again = list(probe_mod.probe(model, task, x, y, 10))
    assert first.k == 1 and [r.k for r in again] == list(range(1, 11))
    for a, b in zip(whole, again, strict=True):
        np.testing.assert_array_equal(a.residuals, b.residuals)
        assert a.accuracy == b.accuracy


def test_the_bench_counts_cpu_time_spent_on_other_threads():
    def work_elsewhere():
        def spin():
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.05:
                pass
        t = threading.Thread(target=spin)
        t.start()
        t.join()

    wall, cpu = bench._timed(work_elsewhere, torch.device("cpu"))
    assert cpu >= 0.05


def test_probe_elapsed_leaves_out_the_time_its_consumer_held_it(monkeypatch):
    from conftest import tiny_model

    from tasks import get_task
    from ttc.engine import probe as probe_mod

    monkeypatch.setattr(probe_mod, "FLUSH_S", 0.0)  # a record after every iteration
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    task = get_task("prefix_sums")
    x, y = task.generate(9, 4, 4)
    real, away = time.perf_counter, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real() + away[0])  # a clock the consumer moves on
    recs = []
    for r in probe_mod.probe(model, task, x, y, 4):
        recs.append(r)
        away[0] += 100.0  # a consumer drawing for 100 s (no waiting)
    assert [r.k for r in recs] == [1, 2, 3, 4]
    # three 100 s holds came before the last iteration; none of them is the run's time
    assert 0 < recs[0].elapsed <= recs[-1].elapsed < 100.0

def test_a_curve_cut_by_its_budget_is_flagged_and_serialises():
    acc = [0.0, 0.1, 0.2, 0.3]
    c = report.Curve(checkpoint="c", family="recursive", arch="conv1d", task="prefix_sums", size=64, factor=2, n=10,
                     budget=4, accuracy=acc, residual=[0.1] * 4, nfe=[1, 2, 3, 4], seconds=0.1, stop="budget",
                     converged=0, diverged=0)
    assert c.still_improving is True
    assert json.loads(json.dumps(asdict(c)))["still_improving"] is True


def test_report_budgets_follow_the_growth_seen_so_far(make_checkpoint):
    from ttc.engine.checkpoint import load_checkpoint

    ck = load_checkpoint(make_checkpoint("prefix_sums", "recursive", "conv1d"))  # 3 training iterations
    cfg = report.report_config(quick=False)
    assert report.looped_budget(ck, 32, [], cfg) == cfg.base_budget * 3
    assert report.looped_budget(ck, 128, [(32, 10)], cfg) == 120  # linear from one solved size
    assert report.growth([(9, 14), (19, 70)]) == 2.0  # faster than quadratic: clamped
    assert report.looped_budget(ck, 38, [(9, 14), (19, 70)], cfg) == 3 * 70 * 4
    assert report.growth([(32, 10), (64, 10)]) == 1.0  # flat: still budget at least linearly
    assert report.looped_budget(ck, 4096, [(32, 10)], cfg) == cfg.iter_cap


def test_the_report_says_where_thinking_longer_helps_and_where_it_stops():
    # accuracy at the training iterations (3), the best within a point, and the end of the run decide the verdict
    helps = report.longer_verdict([0.0, 0.1, 0.2, 0.5, 0.9, 0.95, 0.95], trained_at=3)
    assert helps[0] == pytest.approx(0.2) and helps[1].startswith("helps: from 20.0% at 3 to 95.0% by 6")
    stops = report.longer_verdict([0.5, 1.0, 1.0, 1.0, 1.0], trained_at=3)
    assert stops[1].startswith("stops paying at 2 iterations")
    falls = report.longer_verdict([0.2, 0.9, 1.0, 0.8, 0.7], trained_at=3)
    assert "overthinking" in falls[1] and "70.0%" in falls[1]
    assert report.longer_verdict([0.0, 0.0], trained_at=3)[1] == "solves none within the budget"
    assert report.longer_verdict([0.0, 0.01], trained_at=1)[1].startswith("solves almost none")
    rows = report.longer_lines({"models": [{"checkpoint": "c", "train_iters": 3}],
                                "curves": [{"checkpoint": "c", "size": 8, "accuracy": [0.0, 0.5, 0.5, 1.0],
                                            "best_accuracy": 1.0, "near_best_iter": 4, "final_accuracy": 1.0}]})
    assert any(r.startswith("| c | 8 | 3 | 50.0% | 100.0% (4) | 100.0% (4) | helps") for r in rows)


def test_bench_precision_group_reports_ratios_gflops_and_training(make_checkpoint, one_thread):
    make_checkpoint("mazes", "recursive", "conv2d")
    folder = make_checkpoint("prefix_sums", "recursive", "conv1d").parent
    result = bench.run_bench(quick=True, folder=folder, device="cpu", groups=("precision",))
    check_entries(result)
    entries = [e for e in result["entries"] if e["group"] == "precision"]
    figure = entries[0]
    assert figure["name"].startswith("matmul figure") and figure["gflops"]["fp32"] > 0 and figure["gflops"]["bf16"] > 0
    runs = [e for e in entries if "fraction_of_matmul" in e]
    assert runs and all(0 < e["fraction_of_matmul"]["fp32"] and e["gflops"]["bf16"] > 0 for e in runs)
    assert all(set(e["seconds"]) == {"before", "fp32", "bf16"} for e in entries if "seconds" in e)
    train = [e for e in entries if "steps_per_second" in e]
    assert train and all(e["steps_per_second"]["bf16"]["median"] > 0 for e in train)
    for e in train:  # the step's roofline: its counted products at the bf16 matmul figure bound its steps per second
        assert e["flop_per_step"] > 0 and e["step_gflops"]["bf16"] > 0
        bound = figure["gflops"]["bf16"] * 1e9 / e["flop_per_step"]
        assert e["ceiling_steps_per_second"] == pytest.approx(bound, rel=0.02, abs=0.1)
        before = e["steps_per_second"]["before"]["median"]
        assert e["ceiling_vs_before"] == pytest.approx(bound / before, rel=0.3)  # the median of times, not of rates
    lines = bench.format_table(result)
    assert any("GFLOP/s" in line for line in lines)
    assert any("GFLOP a step" in line for line in lines)


def test_the_dashboard_group_does_not_print_streamlits_bare_mode_warning(capfd):
    """AppTest.from_file logs "missing ScriptRunContext" on its way to making its own context: the bench's
    dashboard group keeps that expected line out of its output (it showed in `bench --quick`)."""
    from streamlit.testing.v1 import AppTest

    from ttc.tools.bench.dashboard import _quiet_bare_mode

    capfd.readouterr()
    with _quiet_bare_mode():
        AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    out, err = capfd.readouterr()
    assert "ScriptRunContext" not in out + err
