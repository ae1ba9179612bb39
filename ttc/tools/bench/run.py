"""The whole bench: every requested group on a folder's checkpoints, and its plain-text table."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from models import UNROLLED
from models import precision as prec
from ttc.engine.probe import resolve_device
from ttc.engine.zoo import deq_cases, load_zoo, machine
from ttc.tools.bench.common import DISAGREE, GROUPS, _dashboard_rank, _family_rank, _limit, bench_config
from ttc.tools.bench.dashboard import bench_dashboard
from ttc.tools.bench.deq import bench_descent_memory, bench_memory, bench_solvers, bench_torchdeq
from ttc.tools.bench.overhead import allocator_checkpoints, bench_allocator, bench_overhead
from ttc.tools.bench.precision import bench_precision
from ttc.tools.bench.speed import bench_stop, bench_throughput


def run_bench(quick: bool = False, folder: str | Path = "checkpoints", device: str | None = "cpu",
              groups: tuple[str, ...] = GROUPS, on_event: Callable[[str], None] | None = None,
              precision: str = "fp32") -> dict:
    """Every requested group on the folder's checkpoints: {machine, config, checkpoints, notes, entries}.
    precision: what every group but `precision` computes in (resolved: fp32 or bf16); default fp32, the figures
    the README's tables were measured in."""
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"unknown bench groups {bad}; known groups: {', '.join(GROUPS)}")
    say = on_event or (lambda msg: None)
    dev = resolve_device(device)
    cfg = bench_config(quick)
    folder = Path(folder)
    t_start = time.perf_counter()
    cks, notes = load_zoo(folder)
    if not cks:
        notes.append(f"no checkpoint in {folder}: the overhead, throughput and dashboard entries are skipped")
    cases, deq_notes = deq_cases(cks) if {"solvers", "torchdeq", "memory"} & set(groups) else ([], [])
    notes += deq_notes
    by_family = sorted(cks, key=_family_rank)
    entries: list[dict] = []

    def step(label: str, fn: Callable[[], dict | list[dict]]) -> None:
        say(f"{label} ({time.perf_counter() - t_start:.0f}s)")
        with prec.use(precision):
            got = fn()
        entries.extend(got if isinstance(got, list) else [got])

    if "overhead" in groups:
        for ck in _limit(by_family, cfg):
            step(f"overhead {ck.name}", lambda ck=ck: bench_overhead(ck, cfg, dev))
    if "allocator" in groups:
        for ck in _limit(allocator_checkpoints(cks), cfg):
            step(f"allocator {ck.name}", lambda ck=ck: bench_allocator(ck, cfg, dev))
    for case in _limit(cases, cfg):
        if "solvers" in groups:
            step(f"solvers {case.name}", lambda case=case: bench_solvers(case, cfg, dev))
        if "torchdeq" in groups:
            step(f"torchdeq {case.name}", lambda case=case: bench_torchdeq(case, cfg, dev))
        if "memory" in groups:
            step(f"memory {case.name}", lambda case=case: bench_memory(case, cfg, dev))
    if "memory" in groups:  # families with memory modes but no solver (EBMs): unrolled vs their cheaper mode
        descent = [ck for ck in by_family if UNROLLED in ck.model.memory_modes and not ck.model.has_solver
                   and len(ck.model.memory_modes) > 1]
        for ck in _limit(descent, cfg):
            step(f"memory {ck.name}", lambda ck=ck: bench_descent_memory(ck, cfg, dev))
    if "throughput" in groups:
        for ck in _limit(by_family, cfg):
            step(f"throughput {ck.name}", lambda ck=ck: bench_throughput(ck, cfg, dev))
    if "stop" in groups and cks:
        step("stop", lambda: bench_stop(min(cks, key=_dashboard_rank), cfg, dev))
    if "dashboard" in groups:
        step("dashboard", lambda: bench_dashboard(cks, folder, cfg))
    if "precision" in groups and cks:
        step("precision", lambda: bench_precision(by_family, cfg, dev, say, lambda items: _limit(items, cfg)))
    if cfg.max_checkpoints and len(cks) > cfg.max_checkpoints:
        notes.append(f"--quick measures {cfg.max_checkpoints} checkpoint per group; run without --quick for all")
    return {"quick": quick, "machine": machine(dev), "precision": precision, "config": asdict(cfg),
            "folder": str(folder),
            "checkpoints": [c.name for c in cks], "notes": notes, "entries": entries,
            "seconds": round(time.perf_counter() - t_start, 2)}


def format_table(result: dict) -> list[str]:
    """The bench as plain-text lines: one per entry, ratio median [min, max] and the aim."""
    m = result["machine"]
    lines = [f"TTC Lab bench{' (quick)' if result['quick'] else ''}: {m['cpu']}, {m['cores']} cores, torch "
             f"{m['torch']} ({m['torch_threads']} threads), device {m['device']}, load {m['load_average']}; "
             f"{result['seconds']:.0f}s", f"  allocator: {m.get('allocator', 'default')}"]
    for e in result["entries"]:
        if e.get("ratio") is None:
            lines.append(f"  {e['name']}: skipped ({e.get('skipped', 'no data')})")
            continue
        r = e["ratio"]
        aim = f"  aim {e['aim']}: {'met' if e.get('meets_aim') else 'not met'}" if e.get("aim") else ""
        lines.append(f"  {e['name']}: {fmt_ratio(r)}{aim}")
        lines.append(f"      {e['compares']}")
        if headline(e):
            lines.append(f"      {headline(e)}")
        if e.get("trusted") is False:
            lines.append(f"      NOT TO BE TRUSTED: its repeats disagree by {r['max'] / r['min']:.1f}x (more than "
                         f"{DISAGREE:g}x; load average {m['load_average']}): the machine was busy; rerun it alone")
    lines += [f"  note: {n}" for n in result["notes"]]
    return lines


def headline(e: dict) -> str:
    """The absolute numbers behind an entry's ratio, in a few words ('' when there are none)."""
    med = lambda key: e[key]["median"]  # noqa: E731
    if e["group"] == "overhead":
        return f"cpu-time ratio {fmt_ratio(e['cpu_ratio'])}; bare {med('bare_seconds'):.3f} s, probe " \
               f"{med('probe_seconds'):.3f} s (medians)" if e.get("cpu_ratio") else ""
    if e["group"] == "allocator":
        b = e["bare_seconds"]
        return f"bare {b['default']['median']:.3f} s default, {b['tuned']['median']:.3f} s tuned; probe " \
               f"{fmt_ratio(e['probe_ratio'])}; probe / bare {e['overhead_default']['median']:.3g} default, " \
               f"{e['overhead_tuned']['median']:.3g} tuned (medians)"
    if e["group"] == "solvers":
        run = e["runs"][0]
        return "; ".join(f"{m}: batch NFE {run[m]['nfe']}, converged {run[m]['converged']:.0%}" for m in run) + \
            " (first batch)"
    if e["group"] == "torchdeq" and "nfe" in e:
        return f"NFE ours {e['nfe']['ours']}, torchdeq {e['nfe']['torchdeq']}; fixed points differ by " \
               f"{e['fixed_points_rel_diff']:.1e}"
    if e["group"] == "torchdeq" and "seconds" in e:
        cpu = f"cpu-time ratio {fmt_ratio(e['cpu_ratio'])}; " if e.get("cpu_ratio") else ""
        return f"{cpu}seconds per call (median): ours {e['seconds']['ours']['median']:.3f}, torchdeq " \
               f"{e['seconds']['torchdeq']['median']:.3f}"
    if e["group"] == "memory":
        b = e.get("saved_bytes") or e.get("peak_bytes") or {}
        return ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in b.items() if v is not None)
    if e["group"] == "throughput":
        return ", ".join(f"size {k}: {v['median']:.1f} it/s" for k, v in e["iterations_per_second"].items())
    if e["group"] == "precision" and "gflops" in e and "fraction_of_matmul" not in e:
        return f"matmul GFLOP/s: fp32 {e['gflops']['fp32']}, bf16 {e['gflops']['bf16']}; auto here: {e['auto']}"
    if e["group"] == "precision" and "fraction_of_matmul" in e:
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; GFLOP/s fp32 {e['gflops']['fp32']} " \
               f"({e['fraction_of_matmul']['fp32']:.0%} of its matmul), bf16 {e['gflops']['bf16']} " \
               f"({e['fraction_of_matmul']['bf16']:.0%} of its matmul, {e['bf16_fraction_of_fp32_matmul']:.0%} " \
               f"of fp32's)"
    if e["group"] == "precision" and "steps_per_second" in e:
        sp, g = e["steps_per_second"], e["step_gflops"]["bf16"]
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; steps/s before {sp['before']['median']:.2f}, fp32 " \
               f"{sp['fp32']['median']:.2f}, bf16 {sp['bf16']['median']:.2f}; {e['flop_per_step'] / 1e9:.3g} GFLOP " \
               f"a step, bf16 at {g} GFLOP/s ({e['fraction_of_bf16_matmul']['bf16']:.0%} of the bf16 matmul); at " \
               f"that matmul figure a step could run {e['ceiling_steps_per_second']}/s, {e['ceiling_vs_before']}x " \
               "before"
    if e["group"] == "precision":
        return f"bf16/fp32 {fmt_ratio(e['bf16_vs_fp32'])}; seconds before {e['seconds']['before']['median']:.3f}, " \
               f"fp32 {e['seconds']['fp32']['median']:.3f}, bf16 {e['seconds']['bf16']['median']:.3f}"
    if e["group"] == "dashboard":
        return f"whole rerun {med('rerun_seconds'):.2f} s, the run alone {med('compute_seconds'):.2f} s (medians of " \
               "each, taken separately: their quotient need not be the median of the per-repeat ratios)"
    return ""


def fmt_ratio(r: dict) -> str:
    """'1.04 [1.01, 1.09] (n=15)' for a ratio's median, min and max."""
    def f(v: float) -> str:
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return f"{f(r['median'])} [{f(r['min'])}, {f(r['max'])}] (n={r['repeats']})"

