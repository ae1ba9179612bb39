"""Groups `solvers`, `torchdeq` and `memory`: a DEQ's solvers against each other and torchdeq, and training memory per
backward mode (and an EBM's descent)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from models import UNROLLED, solvers
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.memory import measure_step
from ttc.engine.zoo import DEQCase, training_size
from ttc.tools.bench.common import SEED, TORCHDEQ_OPTS, BenchConfig, _batch, _paired, entry, skipped, spread


def _f_of(case: DEQCase, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return case.model.fixed_point_map(x)[0]


def bench_solvers(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> dict:
    """Anderson vs fixed-point iteration: batch NFE until every sample reaches rel tol (or the cap)."""
    model = case.model.to(dev).eval()
    ratios, rows = [], []
    for r in range(cfg.solver_repeats):
        *_, x, _ = _batch(case.task, case.size, cfg.solver_n, SEED + r, dev)
        with torch.no_grad():
            f = _f_of(case, x)
            z0 = model.fixed_point_map(x)[1]
            row = {}
            for method in ("anderson", "fixed_point"):
                t0 = time.perf_counter()
                _, st = solvers.solve(f, z0, method, tol=cfg.tol, max_iter=cfg.max_iter)
                conv = st.converged
                row[method] = {"nfe": st.nfe, "converged": float(conv.float().mean()),
                               "mean_stop_step_converged": float(st.stop_step[conv].float().mean())
                               if bool(conv.any()) else None, "seconds": time.perf_counter() - t0}
        rows.append(row)
        ratios.append(row["anderson"]["nfe"] / row["fixed_point"]["nfe"])
    capped = any(row["fixed_point"]["converged"] < 1 for row in rows)
    return entry("solvers", f"Anderson vs fixed point: {case.name}",
                 f"batch NFE of Anderson / batch NFE of fixed-point iteration to rel tol {cfg.tol:g} (cap "
                 f"{cfg.max_iter} steps), same f and problems; repeats draw new problems", ratios, aim="<= 0.5",
                 runs=rows, random_model=case.random,
                 note=(f"fixed-point iteration hit the {cfg.max_iter}-step cap on some samples: its NFE is a lower "
                       "bound, so the ratio is an upper bound") if capped else None,
                 setup={"model": case.name, "task": case.task, "size": case.size, "n": cfg.solver_n,
                        "tol": cfg.tol, "max_iter": cfg.max_iter, "device": dev.type})


def bench_torchdeq(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> list[dict]:
    """This project's Anderson vs torchdeq 0.1.0's on the same f, z0, history m, lam, tol and cap."""
    compares_nfe = ("function evaluations of our Anderson / torchdeq 0.1.0's Anderson on the same f and z0 "
                    f"(m={TORCHDEQ_OPTS['m']}, lam={TORCHDEQ_OPTS['lam']:g}, rel tol {cfg.tol:g}, cap {cfg.max_iter})")
    compares_time = "wall time per solve call of our Anderson / torchdeq 0.1.0's, same setting, interleaved"
    try:
        from torchdeq.solver import get_solver
    except ImportError:
        why = "torchdeq is not installed (pip install torchdeq==0.1.0)"
        return [skipped("torchdeq", f"Anderson NFE vs torchdeq: {case.name}", compares_nfe, why),
                skipped("torchdeq", f"Anderson time vs torchdeq: {case.name}", compares_time, why)]
    td = get_solver("anderson")
    model = case.model.to(dev).eval()
    *_, x, _ = _batch(case.task, case.size, cfg.solver_n, SEED, dev)
    calls: dict[str, int] = {}
    out: dict[str, object] = {}
    with torch.no_grad():
        f = _f_of(case, x)
        z0 = model.fixed_point_map(x)[1]

        def ours():
            c = solvers.Counted(f)
            z, st = solvers.solve(c, z0, "anderson", tol=cfg.tol, max_iter=cfg.max_iter, **TORCHDEQ_OPTS)
            calls["ours"], out["ours"] = c.calls, (z, float(st.converged.float().mean()))

        def theirs():
            c = solvers.Counted(f)
            z, _, info = td(c, z0, max_iter=cfg.max_iter, tol=cfg.tol, stop_mode="rel", **TORCHDEQ_OPTS)
            calls["torchdeq"] = c.calls
            out["torchdeq"] = (z, float((info["rel_lowest"] < cfg.tol).float().mean()))

        t = _paired(theirs, ours, max(3, cfg.repeats // 2), dev)
    z_ours, conv_ours = out["ours"]
    z_td, conv_td = out["torchdeq"]
    diff = float((z_ours - z_td).norm() / (z_td.norm() + 1e-12))
    setup = {"model": case.name, "task": case.task, "size": case.size, "n": cfg.solver_n, "tol": cfg.tol,
             "max_iter": cfg.max_iter, **TORCHDEQ_OPTS, "device": dev.type}
    common = {"random_model": case.random, "setup": setup,
              "converged": {"ours": conv_ours, "torchdeq": conv_td}, "fixed_points_rel_diff": diff,
              "note": "torchdeq stops the whole batch at once; ours freezes each sample at its own tolerance"}
    return [
        entry("torchdeq", f"Anderson NFE vs torchdeq: {case.name}", compares_nfe,
              [calls["ours"] / calls["torchdeq"]],
              nfe={"ours": calls["ours"], "torchdeq": calls["torchdeq"]}, **common),
        entry("torchdeq", f"Anderson time vs torchdeq: {case.name}", compares_time, t["wall"], timed=True,
              cpu_ratio=spread(t["cpu"]) if t["cpu"] else None,
              seconds={"ours": spread(t["b_seconds"]), "torchdeq": spread(t["a_seconds"])}, **common),
    ]


def bench_memory(case: DEQCase, cfg: BenchConfig, dev: torch.device) -> list[dict]:
    """Bytes autograd saves in one training step: implicit at 1000 vs 10 forward iterations, unrolled vs
    implicit at 100 (and the CUDA peaks on a GPU). Forward solves run exactly the iteration count (tol 0)."""
    model = copy.deepcopy(case.model).to(dev)
    model.settings = model.settings.updated(backward_solver={"max_iter": 30})  # the implicit backward's own solve
    rows: dict[tuple[str, int], list[dict]] = {}
    size = min(case.size, 32)
    cheap = next(m for m in model.memory_modes if m != UNROLLED)  # a DEQ's implicit differentiation
    for r in range(cfg.memory_repeats):
        *_, x, y = _batch(case.task, size, cfg.memory_batch, SEED + r, dev)
        for mode, k in ((cheap, 10), (cheap, 1000), (cheap, 100), (UNROLLED, 100)):
            rows.setdefault((mode, k), []).append(measure_step(model, x, y, mode, k, tol=0.0))
    setup = {"model": case.name, "task": case.task, "size": size, "batch": cfg.memory_batch, "device": dev.type,
             "forward_tol": 0.0, "backward_max_iter": 30}

    def ratio(num: tuple[str, int], den: tuple[str, int], key: str) -> list[float]:
        return [a[key] / b[key] for a, b in zip(rows[num], rows[den], strict=True) if a[key] and b[key]]

    def saved(key: str) -> dict:
        return {f"{m}@{k}": rs[0][key] for (m, k), rs in rows.items()}

    out = [
        entry("memory", f"{cheap} memory vs iterations: {case.name}",
              f"bytes saved for backward by an {cheap}-differentiation step at 1000 forward iterations / at 10",
              ratio((cheap, 1000), (cheap, 10), "saved_bytes"), aim="<= 1.00",
              saved_bytes=saved("saved_bytes"), random_model=case.random, setup=setup),
        entry("memory", f"unrolled vs {cheap} at 100 iterations: {case.name}",
              f"bytes saved for backward by unrolled backprop through 100 solver steps / by {cheap} "
              "differentiation at 100", ratio((UNROLLED, 100), (cheap, 100), "saved_bytes"), aim=">= 20",
              saved_bytes=saved("saved_bytes"), random_model=case.random, setup=setup),
    ]
    if dev.type == "cuda":
        out += [
            entry("memory", f"{cheap} CUDA peak vs iterations: {case.name}",
                  f"CUDA peak allocated above baseline, {cheap} step at 1000 forward iterations / at 10",
                  ratio((cheap, 1000), (cheap, 10), "peak_bytes"), aim="<= 1.00",
                  peak_bytes=saved("peak_bytes"), random_model=case.random, setup=setup),
            entry("memory", f"unrolled vs {cheap} CUDA peak at 100: {case.name}",
                  f"CUDA peak allocated above baseline, unrolled / {cheap} at 100 iterations",
                  ratio((UNROLLED, 100), (cheap, 100), "peak_bytes"), aim=">= 20",
                  peak_bytes=saved("peak_bytes"), random_model=case.random, setup=setup),
        ]
    return out


def bench_descent_memory(ck: Checkpoint, cfg: BenchConfig, dev: torch.device) -> dict:
    """Training memory of a family whose memory modes include unrolled but no solver (an EBM): bytes saved when
    training through all of T descent steps / through the last step only, at T = its training steps."""
    model = copy.deepcopy(ck.model).to(dev)
    others = [m for m in model.memory_modes if m != UNROLLED]
    size = min(training_size(ck), 32)
    k = ck.config.layers
    ratios, rows = [], []
    for r in range(cfg.memory_repeats):
        *_, x, y = _batch(ck.task, size, cfg.memory_batch, SEED + r, dev)
        un, other = measure_step(model, x, y, UNROLLED, k), measure_step(model, x, y, others[0], k)
        rows.append({UNROLLED: un["saved_bytes"], others[0]: other["saved_bytes"]})
        if other["saved_bytes"]:
            ratios.append(un["saved_bytes"] / other["saved_bytes"])
    return entry("memory", f"unrolled vs {others[0]} at {k} steps: {ck.name}",
                 f"bytes saved for backward by training through all {k} steps / through the {others[0]} mode "
                 f"at {k}", ratios, aim=">= 5", saved_bytes=rows[0],
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "batch": cfg.memory_batch,
                        "iters": k, "device": dev.type})

