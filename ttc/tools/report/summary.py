"""summary.md: the report's results as prose and tables, each number with the run that produced it."""

from __future__ import annotations

import numpy as np

from ttc.tools.report.measures import _auroc, difficulty_fits


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB"


def longer_verdict(accuracy: list[float], trained_at: int) -> tuple[float | None, str]:
    """(accuracy at the training iteration count, where thinking longer helps or stops) for one looped curve."""
    acc = np.asarray(accuracy, dtype=np.float64)
    at_train = float(acc[min(trained_at, len(acc)) - 1]) if len(acc) else None
    best = float(acc.max())
    near = int(np.argmax(acc >= best - 0.01)) + 1
    if best <= 0:
        return at_train, "solves none within the budget"
    if best < 0.05:
        return at_train, f"solves almost none (best {_pct(best)})"
    if best - float(acc[-1]) > 0.01:
        return at_train, f"helps up to {near} iterations, then falls to {_pct(float(acc[-1]))} (overthinking)"
    if near > trained_at and best - (at_train or 0.0) > 0.01:
        return at_train, f"helps: from {_pct(at_train)} at {trained_at} to {_pct(best)} by {near}, then holds"
    return at_train, f"stops paying at {near} iterations (within a point of the best) and holds"


def longer_lines(t: dict) -> list[str]:
    """Per looped checkpoint and size: does running longer than the training iterations help, and where it stops."""
    trained = {m["checkpoint"]: m["train_iters"] for m in t["models"]}
    rows = [c for c in t["curves"] if not c.get("fixed_depth") and c["accuracy"]]
    if not rows:
        return []
    out = ["Thinking longer than trained (a DEQ's solver steps, an EBM's descent steps, a loop's iterations): "
           "accuracy at the training iteration count against the best and the end of the run (its last iteration: "
           "the budget, or earlier where every state stopped changing or every problem stayed solved).", "",
           "| checkpoint | size | trained at | accuracy there | best (within 1 pt at) | end of run (at) | longer |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in rows:
        k = trained.get(c["checkpoint"], 1)
        at, verdict = longer_verdict(c["accuracy"], k)
        out.append(f"| {c['checkpoint']} | {c['size']} | {k} | {_pct(at) if at is not None else 'n/a'} | "
                   f"{_pct(c['best_accuracy'])} ({c['near_best_iter']}) | {_pct(c['final_accuracy'])} "
                   f"({len(c['accuracy'])}) | {verdict} |")
    return out + [""]


def _figure_lines(figs: dict):
    """img(stem): the figure's picture (PNG, else SVG) and a link to its interactive HTML, as markdown lines."""
    def img(stem: str) -> list[str]:
        files = figs.get(stem, [])
        pic = next((f for f in files if f.endswith(".png")), None) or next((f for f in files if f.endswith(".svg")),
                                                                          None)
        html = next((f for f in files if f.endswith(".html")), None)
        out = [f"![{stem}](figures/{pic})"] if pic else []
        if html:
            out.append(f"[interactive: figures/{html}](figures/{html})")
        return out + [""] if out else []
    return img


def _how_made(res: dict) -> list[str]:
    m = res["machine"]
    cfg = res["config"]
    made = [f"Made by `{res['command'] or 'python -m ttc report'}` in {res['seconds'] / 60:.1f} min on {m['cpu']} "
            f"({m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads, device {m['device']}, "
            f"load average {m['load_average']}).", ""]
    if res.get("sections"):  # a report updated task by task (report --update)
        made = ["Made task by task:"] + [
            f"- {', '.join(sec['tasks'])}: `{sec['command']}`, {sec['seconds'] / 60:.1f} min on {sm['cpu']} "
            f"({sm['torch_threads']} threads, device {sm['device']})"
            for sec in res["sections"] for sm in [sec["machine"]]] + [""]
    lines = ["# TTC Lab findings", "", *made,
             f"Test problems from seed {res['seed']} (never used in training). Exact-match accuracy: a problem "
             f"counts only if every output cell is right. Up to {cfg['n_base']} problems per run; where a run "
             f"would cost more than {cfg['cost_cap']:.2g} (problems x cells x iterations x width^2) the problems are "
             f"cut (to no fewer "
             f"than {cfg['n_min']}), and the column n says how many were used. Budgets: "
             f"{cfg['base_budget']}x the training iterations at the training size, then 3x the iterations the last "
             f"solved size (best accuracy >= 50%) needed, grown with size at the rate seen between the last two "
             f"solved sizes (between linear and quadratic; cap {cfg['iter_cap']}). A curve ends early once no "
             "sample's state changes any more (relative change < 1e-4; a DEQ's solver tolerance) or once every "
             "problem has been solved for as many iterations again (the `stop` column).", ""]
    if res.get("rendered_by"):
        lines += [f"Figures and this summary rendered again from the run's results.json by `{res['rendered_by']}` "
                  f"(formats: {', '.join(res['formats'])}).", ""]
    if res["quick"]:
        lines += ["**Quick run** (`--quick`): fewer sizes, problems and iterations; not the findings.", ""]
    for note in res["notes"] + res["figure_notes"]:
        lines.append(f"- {note}")
    if res["notes"] or res["figure_notes"]:
        lines.append("")
    return lines


def _task_section(t: dict, img) -> list[str]:
    task = t["task"]
    base = t["base_size"]
    lines = [f"## {task}", "",
             "| checkpoint | family | arch | params | trained on sizes | trained at iterations |",
             "| --- | --- | --- | ---: | --- | ---: |"]
    for md in t["models"]:
        lines.append(f"| {md['checkpoint']} | {md['family']} | {md['arch']}, width {md['width']} | "
                     f"{md['params']:,} | {', '.join(map(str, md['train_sizes']))} | {md['train_iters']} |")
    lines += ["", f"Sizes are multiples of {base}, the largest training size of the task's checkpoints "
              "(explicit models: iterations are layers, their depth).", "",
              f"| checkpoint | family | size | x {base} | n | budget | best | at iter | within 1 pt at | final "
              "| stop | converged | s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for c in t["curves"]:
        cut = " (still improving)" if c["still_improving"] else ""
        lines.append(f"| {c['checkpoint']} | {c['family']} | {c['size']} | {c['size'] / base:.3g} | "
                     f"{c['n']} | {c['budget']} | {_pct(c['best_accuracy'])}{cut} | {c['best_iter']} | "
                     f"{c['near_best_iter']} | {_pct(c['final_accuracy'])} | {c['stop']} | "
                     f"{c['converged']}/{c['n']} | {c['seconds']:.1f} |")
    lines.append("")
    for note in t["notes"]:
        lines.append(f"- {note}")
    lines += img(f"{task}-accuracy")
    lines += img(f"{task}-residual")
    lines += longer_lines(t)
    if t["scaling"]:
        lines += ["Iterations to reach the best accuracy (first iteration within one percentage point of it) "
                  "as the problem grows; the exponent is the slope of log(iterations) on log(size) over the "
                  "sizes where the best accuracy is at least 50% and the budget did not cut the curve.", "",
                  "| checkpoint | size: iterations (best accuracy) | iterations ~ size^k |", "| --- | --- | ---: |"]
        for name, fit in t["scaling"].items():
            pts = [c for c in t["curves"] if c["checkpoint"] == name]
            cells = ", ".join(f"{c['size']}: {c['near_best_iter']} ({_pct(c['best_accuracy'])})" for c in pts)
            k = f"{fit['exponent']:.2f}" if fit else "n/a (fewer than 2 sizes at >= 50%)"
            lines.append(f"| {name} | {cells} | {k} |")
        lines.append("")
        lines += img(f"{task}-iterations-vs-size")
    return lines


def _measured_difficulty_section(res: dict) -> list[str]:
    mrows = [r for r in res.get("difficulty") or [] if r.get("measured")]
    if not mrows:
        return []
    lines = ["## Accuracy against measured difficulty", "",
             "For a task whose problems cannot be drawn at a chosen difficulty (sudoku), problems at the "
             "training size and the hardest size are grouped by their measured difficulty (sudoku: the rounds "
             "of naked and hidden singles that solve the puzzle; -1: propagation stops, the puzzle needs "
             "search). Per group: problems, accuracy at the end of the budget, and the median iteration from "
             "which a solved problem stays right.", "",
             "| checkpoint | size | budget | difficulty: n, accuracy, median iterations |",
             "| --- | ---: | ---: | --- |"]
    for key in dict.fromkeys((r["checkpoint"], r["size"]) for r in mrows):
        pts = [r for r in mrows if (r["checkpoint"], r["size"]) == key]
        cells = "; ".join(f"{'search' if r['difficulty'] < 0 else r['difficulty']}: {r['n']}, "
                          f"{_pct(r['accuracy'])}, "
                          + (f"{r['median_iters']:g}" if r["median_iters"] is not None else "none") for r in pts)
        lines.append(f"| {key[0]} | {key[1]} | {pts[0]['budget']} | {cells} |")
    return lines + [""]


def _difficulty_section(res: dict, img) -> list[str]:
    drows = [r for r in res.get("difficulty") or [] if not r.get("skipped") and not r.get("measured")]
    if not drows:
        return []
    fits = difficulty_fits(drows)
    lines = ["## Iterations needed against difficulty", "",
             "Each looped checkpoint at 4x its training size (mazes: 2x the side) on problems drawn at a "
             "ladder of difficulties (the "
             "task's main measure: prefix sums the dependency span, addition the longest carry chain, mazes the "
             "path length; docs/difficulty.md). Iterations: the median over the solved problems of the "
             "iteration from which the answer stays right. Limit: difficulty / the model's reach per iteration "
             "(cells information moves per iteration; none for full attention or an external memory). "
             "Exponent: log-log slope of iterations against difficulty over the difficulties at least half "
             "solved; ratio: the median of iterations / limit, how far above the physical limit it runs.", "",
             "| checkpoint | size | n | reach | difficulty: accuracy, median iterations (limit) | exponent | "
             "x limit |", "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for name, fit in fits.items():
        pts = [r for r in drows if r["checkpoint"] == name]
        cells = "; ".join(f"{r['difficulty']}: {_pct(r['accuracy'])}, "
                          + (f"{r['median_iters']:g}" if r["median_iters"] is not None else "none")
                          + (f" ({r['bound']:.3g})" if r.get("bound") else "") for r in pts)
        exp = f"{fit['exponent']:.2f}" if fit["exponent"] is not None else "n/a"
        ratio = f"{fit['ratio_to_bound']:.2g}" if fit["ratio_to_bound"] is not None else "n/a"
        lines.append(f"| {name} | {pts[0]['size']} | {pts[0]['n']} | {pts[0]['reach'] or 'none'} | {cells} | "
                     f"{exp} | {ratio} |")
    lines.append("")
    for task in dict.fromkeys(r["task"] for r in drows):
        lines += img(f"{task}-iterations-vs-difficulty")
    return lines


def _analysis_section(res: dict) -> list[str]:
    an = res.get("analysis") or {}
    if not an.get("rows"):
        return []
    rho = an["spearman_aa_vs_4x"]
    lines = ["## Path independence, fixed points, halting and breadth", "",
             "`python -m ttc analyze` per looped checkpoint, at its training size with twice its training "
             "iterations per start. AA: the asymptotic-alignment score (mean cosine similarity of the final "
             "states from different initial states; Anil et al. 2022). Fixed point: accuracy after starts x "
             "iterations from zeros, against the best iterate of that run. Halting: the rule that saves the "
             "most compute while staying within a point of the best iterate. Breadth: best of all starts by "
             "final residual (an EBM: final energy), against one run with the same NFE; the verifier's AUROC "
             "separating right from wrong final answers (n/a when all are right or all wrong).", "",
             "| checkpoint | n | AA | largest distance | fixed point (iters) | best iterate (at) | best beats end "
             "| halting: rule, NFE, saved | breadth vs depth | verifier AUROC | 4x size best |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |"]
    for r in an["rows"]:
        h = r["halting"]
        halt = f"{h['rule']} {h['value']:g}, {h['mean_nfe']:.1f}, {_pct(h['compute_saved'])}" if h else "none"
        b = r["breadth"]
        four = _pct(r["accuracy_4x"]) if r["accuracy_4x"] is not None else "n/a"
        lines.append(f"| {r['checkpoint']} | {r['n']} | {r['aa_score']:.4f} | {r['largest_distance']:.2g} | "
                     f"{_pct(r['fixed_point_accuracy'])} ({r['fixed_point_iters']}) | "
                     f"{_pct(r['best_iterate_accuracy'])} ({r['best_iter']}) | "
                     f"{_pct(r['best_iterate_beats_fixed_point'])} | {halt} | "
                     f"{_pct(b['breadth_accuracy'])} vs {_pct(b['depth_accuracy'])} ({b['nfe']} NFE) | "
                     f"{_auroc(r)} | {four} |")
    return lines + ["", f"Rank correlation (Spearman) of the AA score with the best accuracy at 4x the training size, "
                    f"over {an['points']} checkpoints: " + (f"{rho:.2f}." if rho is not None else
                                                            "not defined (fewer than 3 points or a constant side)."),
                    ""]


def _memory_section(res: dict, img) -> list[str]:
    if not res["memory"]:
        return []
    lines = ["## Training memory of a DEQ step", "",
             "Bytes autograd saves for backward in one training step (batch 2), by backward mode and forward "
             "iterations (exactly that many: tol 0); on CUDA also the peak above the baseline.", "",
             "| model | size | mode | iterations | saved | CUDA peak | seconds |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in res["memory"]:
        peak = _mib(r["peak_bytes"]) if r["peak_bytes"] is not None else "n/a (CPU)"
        lines.append(f"| {r['model']} | {r['size']} | {r['mode']} | {r['iters']} | {_mib(r['saved_bytes'])} | "
                     f"{peak} | {r['seconds']:.2f} |")
    lines.append("")
    for name in dict.fromkeys(r["model"] for r in res["memory"]):
        lines += img(f"memory-{name}")
    return lines


def summary_markdown(res: dict) -> str:
    """summary.md: how it was made, then per task the tables and figures, then difficulty, analysis, memory."""
    img = _figure_lines(res["figures"])
    lines = _how_made(res)
    for t in res["tasks"]:
        lines += _task_section(t, img)
    lines += _measured_difficulty_section(res)
    lines += _difficulty_section(res, img)
    lines += _analysis_section(res)
    lines += _memory_section(res, img)
    return "\n".join(lines).rstrip() + "\n"
