"""The whole report: every task's runs, tables and figures into results.json, and rendering them into a folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from models import ConfigError, get_family
from tasks import TASKS
from ttc.app.plots import memory_modes_figure
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.probe import resolve_device
from ttc.engine.zoo import TEST_SEED, deq_cases, load_zoo, machine, training_size
from ttc.tools.report.curves import Curve, ck_precision, run_curve, scaling_fit
from ttc.tools.report.figures import accuracy_figure, difficulty_figure, residual_figure, scaling_figure, write_figure
from ttc.tools.report.measures import analysis_of, analysis_rows, difficulty_rows, memory_rows
from ttc.tools.report.plan import FORMATS, ReportConfig, looped, looped_budget, plan_run, report_config, report_sizes
from ttc.tools.report.summary import summary_markdown


def task_report(task: str, cks: list[Checkpoint], cfg: ReportConfig, device: torch.device,
                say: Callable[[str], None]) -> dict:
    """Every run of one task: the curves at each size, the scaling fits and the notes."""
    cks = sorted(cks, key=lambda c: (c.model.order, c.name))
    base = max(training_size(c) for c in cks)
    factors = sorted(set(cfg.curve_factors) | set(cfg.scaling_factors))
    sizes = report_sizes(task, base, factors)
    curves: list[Curve] = []
    notes: list[str] = []
    for ck in cks:
        if not looped(ck):
            for f in cfg.curve_factors:
                run = plan_run(ck, base, f, lambda size, ck=ck: ck.config.layers, cfg, sizes[f])
                say(f"{task}: {ck.name} at size {run.size}, n={run.n}, depth {ck.config.layers}")
                curves.append(run_curve(ck, run, TEST_SEED, device, ck_precision(ck, cfg, device)))
            continue
        done: list[tuple[int, int]] = []  # (size, iterations to near-best) of the sizes solved so far
        for f in factors:
            run = plan_run(ck, base, f, lambda size, ck=ck, done=list(done): looped_budget(ck, size, done, cfg), cfg,
                           sizes[f])
            ran = [c.size for c in curves if c.checkpoint == ck.name]
            if f > 1 and ran and run.size <= max(ran):  # capped below a size already run: a smaller "4x" misleads
                if sizes[f] > max(ran):
                    notes.append(f"{ck.name}: size {sizes[f]} ({f}x) is over the cost cap even with "
                                 f"{cfg.n_min} problems, and every size that fits was already run; not run")
                continue
            say(f"{task}: {ck.name} at size {run.size}, n={run.n}, budget {run.budget}")
            c = run_curve(ck, run, TEST_SEED, device, ck_precision(ck, cfg, device))
            curves.append(c)
            if c.best_accuracy >= 0.5 and not c.still_improving:
                done.append((c.size, c.near_best_iter))
        notes += [f"{ck.name}: {c.note}" for c in curves if c.checkpoint == ck.name and c.note]
    by_ck: dict[str, list[Curve]] = {}
    for c in curves:
        if not c.fixed_depth:
            by_ck.setdefault(c.checkpoint, []).append(c)
    fits = {name: scaling_fit(cs) for name, cs in by_ck.items()}
    models = [{"checkpoint": c.name, "family": c.family, "arch": c.arch, "params": c.model.num_params(),
               "width": c.config.width, "train_sizes": c.card.get("train_sizes") or [training_size(c)],
               "train_iters": c.config.layers} for c in cks]
    return {"task": task, "base_size": base, "curves": curves, "by_checkpoint": by_ck, "fits": fits,
            "notes": notes, "models": models}


def _check(formats: tuple[str, ...], tasks: list[str] | None) -> None:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown figure formats {bad}; accepted: {', '.join(FORMATS)}")
    unknown = [t for t in tasks or [] if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known tasks: {', '.join(TASKS)}")


def run_report(out: str | Path, folder: str | Path = "checkpoints", tasks: list[str] | None = None,
               quick: bool = False, formats: tuple[str, ...] = FORMATS, device: str | None = "cpu",
               on_event: Callable[[str], None] | None = None, command: str = "", precision: str = "auto",
               update: bool = False) -> dict:
    """Run everything, then `render` the figures, results.json and summary.md under out; return the results.
    update: keep the tasks this run does not run from the results.json already in out (merge_results)."""
    say = on_event or (lambda msg: None)
    _check(formats, tasks)
    dev = resolve_device(device)
    cfg = replace(report_config(quick), precision=precision)
    t0 = time.perf_counter()
    cks, notes = load_zoo(folder)
    wanted = [t for t in TASKS if t in (tasks or TASKS)]
    per_task = []
    for task in wanted:
        mine = [c for c in cks if c.task == task]
        if not mine:
            notes.append(f"{task}: no checkpoint in {folder}; nothing to report")
            continue
        per_task.append(task_report(task, mine, cfg, dev, say))
    say("memory table")
    cases, deq_notes = deq_cases([c for c in cks if c.task in wanted] or cks, uses="the memory table uses")
    mem_rows: list[dict] = []
    for case in cases:
        rows, mnotes = memory_rows(case, cfg, dev)
        mem_rows += rows
        notes += [f"{case.name}: {m}" for m in mnotes]
    notes += deq_notes
    say("iterations needed against difficulty")
    difficulty = difficulty_rows([c for c in cks if c.task in wanted], cfg, dev, say)
    say("analysis (path independence, fixed points, halting, breadth)")
    analysis = analysis_rows([c for c in cks if c.task in wanted], per_task, cfg, dev, say)
    results = {
        "command": command, "quick": quick, "machine": machine(dev),
        "seconds": round(time.perf_counter() - t0, 1), "config": asdict(cfg), "folder": str(folder),
        "checkpoints": [c.name for c in cks], "seed": TEST_SEED,
        "tasks": [{"task": tr["task"], "base_size": tr["base_size"], "notes": tr["notes"], "models": tr["models"],
                   "curves": [asdict(c) for c in tr["curves"]],
                   "scaling": {k: v for k, v in tr["fits"].items()}} for tr in per_task],
        "memory": mem_rows, "analysis": analysis, "notes": notes, "difficulty": difficulty,
    }
    if update:
        results = merge_results(read_results(Path(out) / "results.json"), results)
    return render(results, out, formats)


def read_results(path: str | Path) -> dict:
    """An earlier run's results.json; ValueError when it cannot be read or is not one."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read results {str(path)!r}: {e}") from None
    if not isinstance(results, dict) or not {"tasks", "memory", "config", "command", "checkpoints"} <= set(results):
        raise ValueError(f"{str(path)!r} is not a results.json written by python -m ttc report")
    return results


def merge_results(old: dict, new: dict) -> dict:
    """`report --update`: new's results for the tasks it ran in place of old's, old's other tasks kept (their curves,
    memory, difficulty and analysis rows); the AA correlation is taken again over the merged rows, and `sections`
    says which command made which tasks."""
    ran = {t["task"] for t in new["tasks"]} | {r["task"] for r in new.get("difficulty") or []}
    task_of = {m["checkpoint"]: t["task"] for res in (old, new) for t in res["tasks"] for m in t["models"]}
    keep = lambda task: task not in ran  # noqa: E731
    order = list(TASKS)
    out = dict(new)
    out["tasks"] = sorted([t for t in old["tasks"] if keep(t["task"])] + new["tasks"],
                          key=lambda t: order.index(t["task"]) if t["task"] in order else len(order))
    out["memory"] = [r for r in old["memory"] if keep(task_of.get(r["model"], ""))] + new["memory"]
    out["difficulty"] = [r for r in old.get("difficulty") or [] if keep(r["task"])] + (new.get("difficulty") or [])
    out["analysis"] = analysis_of([r for r in (old.get("analysis") or {}).get("rows", []) if keep(r["task"])]
                                  + new["analysis"]["rows"])
    out["checkpoints"] = sorted(set(old["checkpoints"]) | set(new["checkpoints"]))
    out["notes"] = [n for n in old["notes"] if keep(task_of.get(n.split(":")[0], n.split(":")[0]))] + new["notes"]
    kept = [{**sec, "tasks": [t for t in sec["tasks"] if keep(t)]} for sec in old.get("sections") or [_section(old)]]
    out["sections"] = [sec for sec in kept if sec["tasks"]] + [_section(new)]
    out["seconds"] = round(old["seconds"] + new["seconds"], 1)
    return out


def _section(res: dict) -> dict:
    tasks = sorted({t["task"] for t in res["tasks"]}, key=lambda t: list(TASKS).index(t) if t in TASKS else 99)
    return {"command": res["command"], "tasks": tasks, "seconds": res["seconds"], "machine": res["machine"]}


def _curve(d: dict) -> Curve:
    """A curve read back from results.json (an older file without fixed_depth: its family's class says)."""
    vals = {k: d[k] for k, f in Curve.__dataclass_fields__.items() if f.init and k in d}
    if "fixed_depth" not in vals:
        try:
            vals["fixed_depth"] = get_family(d["family"]).fixed_depth
        except ConfigError:
            vals["fixed_depth"] = False
    return Curve(**vals)


def render(results: dict, out: str | Path, formats: tuple[str, ...] = FORMATS) -> dict:
    """Figures, results.json and summary.md under out from a report's results (a fresh run's, or a results.json
    read back: `python -m ttc report --from-results`). Returns the results with the figures listed."""
    _check(formats, None)
    out = Path(out)
    figdir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[str]] = {}
    figure_notes: list[str] = []
    shown_factors = set(results["config"]["curve_factors"])

    def fig_out(fig: go.Figure, stem: str) -> None:
        files, why = write_figure(fig, figdir, stem, formats)
        figures[stem] = files
        figure_notes.extend(w for w in why if w not in figure_notes)

    for t in results["tasks"]:
        task, curves = t["task"], [_curve(d) for d in t["curves"]]
        shown = [c for c in curves if c.factor in shown_factors]
        fig_out(accuracy_figure(task, shown), f"{task}-accuracy")
        looped = [c for c in shown if not c.fixed_depth]
        if looped:
            fig_out(residual_figure(task, looped), f"{task}-residual")
        by_ck: dict[str, list[Curve]] = {}
        for c in curves:
            if not c.fixed_depth:
                by_ck.setdefault(c.checkpoint, []).append(c)
        if by_ck:
            fig_out(scaling_figure(task, by_ck, t["scaling"]), f"{task}-iterations-vs-size")
    for task in dict.fromkeys(r["task"] for r in results.get("difficulty") or []):
        rows = [r for r in results["difficulty"] if r["task"] == task and not r.get("skipped")]
        if rows:
            fig_out(difficulty_figure(task, rows), f"{task}-iterations-vs-difficulty")
    mem_rows = results["memory"]
    for name in dict.fromkeys(r["model"] for r in mem_rows):
        fig_out(memory_modes_figure([r for r in mem_rows if r["model"] == name]), f"memory-{name}")
    results = {**results, "figures": figures, "figure_notes": figure_notes, "formats": list(formats)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_plain))
    (out / "summary.md").write_text(summary_markdown(results))
    return results


def _plain(v):
    """numpy scalars as Python numbers for JSON."""
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")

