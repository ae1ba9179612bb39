"""`python -m ttc analyze`: path independence, fixed point vs iterate, halting, breadth."""

from __future__ import annotations

import json
import shlex
import sys

from tasks import get_task, optional
from tasks.difficulty import draw
from ttc.engine.checkpoint import load_checkpoint
from ttc.engine.limits import MAX_COST
from ttc.engine.probe import MAX_ITERS
from ttc.engine.runtime import set_threads
from ttc.tools.cli.common import (
    MAX_N,
    UsageError,
    _int_in,
    _progress,
    _size_help,
    add_difficulty_arg,
    add_run_options,
    add_settings_args,
    check_data_bytes,
    check_run_cost,
    precision_of,
    progress_bar,
    run_settings,
)


def add_analyze(sub) -> None:
    from ttc.engine.analyze import MAX_STARTS

    p = sub.add_parser(
        "analyze", help="path independence, fixed point vs best iterate, halting rules, breadth vs depth",
        description="One JSON object on one batch of fresh problems: path_independence (accuracy per initial state, "
                    "final-state distances, the asymptotic-alignment score of Anil et al. 2022), "
                    "fixed_point_vs_iterate (the run of starts x iters iterations from zeros against its best "
                    "iterate), halting (per-sample stopping rules: accuracy against mean iterations and NFE) and "
                    "breadth (best of N starts by final residual, or by an EBM's energy, against one run with the "
                    "same NFE; the verifier's AUROC separating right from wrong final answers). Runs "
                    f"(2 x starts - 1) x iters iterations in all; the cost cap (--max-cost, default {MAX_COST:.0e}) "
                    "applies to that total.")
    p.add_argument("--checkpoint", required=True, help="a looped (not fixed-depth) .safetensors checkpoint")
    p.add_argument("--size", type=int, default=None,
                   help=f"problem size ({_size_help()}); required unless --frontier")
    p.add_argument("--frontier", action="store_true",
                   help="analyse at the checkpoint's frontier: the smallest size (with --size: the smallest difficulty "
                        "at that size) where its best accuracy within --iters lies between 20%% and 90%%, found by "
                        "doubling from the training size (or difficulty 1) and bisecting; the result says what was "
                        "scanned")
    p.add_argument("--iters", type=_int_in("--iters", 1, MAX_ITERS), required=True,
                   help="iterations per start (the depth run gets starts x iters)")
    p.add_argument("--starts", type=_int_in("--starts", 1, MAX_STARTS), default=5,
                   help=f"initial states, 1..{MAX_STARTS}: zeros, noise x0.5, x1, x2, other problems' final states, "
                        "then larger noise")
    p.add_argument("--n", type=_int_in("--n", 1, MAX_N), default=200, help=f"problems, 1..{MAX_N}")
    p.add_argument("--seed", type=_int_in("--seed", 0, 2**63 - 1), default=0, help="problems and noise starts")
    add_difficulty_arg(p)
    p.add_argument("--write", action="store_true",
                   help="also put a compact result (breadth against N, the verifier's AUROC, AA score, fixed point) "
                        "into the checkpoint's card under \"analysis\"")
    add_settings_args(p)
    add_run_options(p, "print the JSON object (default: a short summary)", cmd_analyze)


def cmd_analyze(a) -> int:
    from ttc.engine.analyze import analyze

    ck = load_checkpoint(a.checkpoint)
    if ck.model.fixed_depth:
        raise UsageError(f"{ck.name} is a model of the {ck.family} family: its depth is fixed, there is no iteration "
                         "to analyse")
    task = get_task(ck.task)
    if a.size is None and not a.frontier:
        raise UsageError(f"--size is required without --frontier ({_size_help()})")
    if a.frontier and a.difficulty is not None:
        raise UsageError("--frontier finds the difficulty itself (with --size) or the size; drop --difficulty")
    size = task.sizes.check(task.name, a.size if a.size is not None else max(ck.train_sizes, default=task.train_size))
    check_data_bytes(task, size, a.n)
    total = (2 * a.starts - 1) * a.iters
    if a.starts * a.iters > MAX_ITERS:
        raise UsageError(f"--starts x --iters is {a.starts * a.iters}, the depth run's budget; at most {MAX_ITERS}")
    check_run_cost(a, task, size, a.n, total, ck.config.width, "--n, --size, --iters or --starts")
    settings = run_settings(ck, a)
    precision = precision_of(a, ck)
    set_threads(a.threads)
    frontier = None
    if a.frontier:
        from ttc.engine.frontier import find_frontier

        knob = "difficulty" if a.size is not None else "size"
        if knob == "difficulty" and optional(task, "difficulty_range") is None:
            raise UsageError(f"{task.name} problems cannot be drawn at a difficulty; drop --size to scan sizes")
        say = _progress(a.quiet)
        frontier = find_frontier(ck.model, task, 1 if knob == "difficulty" else size, a.iters, n=a.n, seed=a.seed,
                                 precision=precision, settings=settings, difficulty_at=size if knob == "difficulty"
                                 else None, on_size=lambda v, acc: say(f"frontier: {knob} {v}: best {acc:.1%}"),
                                 max_cost=a.max_cost)
        frontier["knob"] = knob
        if knob == "size":
            size = frontier["value"]
            check_data_bytes(task, size, a.n)
            check_run_cost(a, task, size, a.n, total, ck.config.width, "--n, --iters or --starts")
        else:
            a.difficulty = frontier["value"]
    x, y = draw(task, size, a.n, a.seed, a.difficulty)
    with progress_bar(total, "analyze", a.quiet) as bar:
        out = analyze(ck.model, task, x, y, a.iters, starts=a.starts, seed=a.seed, device=a.device,
                      settings=settings, on_iter=bar.update, precision=precision)
    result = {"checkpoint": ck.name, "task": task.name, "family": ck.family, "size": size, "n": int(len(x)),
              "iters": a.iters, "starts": a.starts, "seed": a.seed, "difficulty": a.difficulty, "precision": precision,
              "frontier": frontier, **out}
    if a.write:
        from ttc.engine.zoo import write_analysis

        write_analysis(a.checkpoint, result, "python -m ttc " + " ".join(shlex.quote(v) for v in sys.argv[1:]))
    if a.json:
        print(json.dumps(result))
        return 0
    pi, fp, br = out["path_independence"], out["fixed_point_vs_iterate"], out["breadth"]["points"]
    if frontier is not None:
        print(f"frontier: {frontier['knob']} {frontier['value']} (best {frontier['best_accuracy']:.1%}"
              + ("" if frontier["in_band"] else ", none of the scanned values was in the 20-90% band") + "); scanned "
              + ", ".join(f"{v}: {acc:.0%}" for v, acc in frontier["scanned"]))
    print(f"{ck.name}: {task.name} size {size}" + (f", difficulty {a.difficulty}" if a.difficulty is not None else "")
          + f", n={len(x)}, {a.iters} iterations x {a.starts} starts")
    print(f"path independence: AA score {pi['aa_score']:.4f}; final accuracy per start: "
          + ", ".join(f"{s['start']} {s['final_accuracy']:.3f}" for s in pi["starts"]))
    print(f"fixed point (iteration {fp['iters']}): {fp['fixed_point_accuracy']:.3f}; best iterate "
          f"{fp['best_iterate_accuracy']:.3f} at {fp['best_iter']}; settled {fp['settled_fraction']:.2f}")
    for h in out["halting"]["rules"]:
        print(f"halting {h['rule']} {h['value']:g}: accuracy {h['accuracy']:.3f} at {h['mean_iters']:.1f} "
              f"iterations on average")
    last = br[-1]
    print(f"breadth {last['starts']} starts ({last['nfe']} NFE): {last['breadth_accuracy']:.3f}; depth at the same "
          f"NFE: {last['depth_accuracy']:.3f}")
    print("breadth accuracy against N starts (best by " + out["breadth"]["verifier"] + "): "
          + ", ".join(f"{p['starts']}: {p['breadth_accuracy']:.3f}" for p in br))
    au = out["breadth"]["verifier_auroc"]
    print(f"{out['breadth']['verifier']} as a verifier: AUROC "
          + (f"{au:.3f}" if au is not None else "undefined (every final answer right, or every one wrong)")
          + f" over {out['breadth']['verifier_n']} final answers ({out['breadth']['verifier_right']} right)")
    return 0

