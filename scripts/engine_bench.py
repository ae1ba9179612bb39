"""Numbers for the DEQ engine (README "Engine"): solver NFE, our Anderson vs torchdeq's, memory ratios.

    python scripts/engine_bench.py [--checkpoint PATH] [--size 32] [--n 64] [--json]

Without --checkpoint it uses a randomly initialised DEQ of the zoo's prefix-sums size (conv1d, width 64,
depth 2, group norm), which is not contractive: few samples reach tol there. One thread, fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ModelConfig, build_model, solvers  # noqa: E402
from tasks import get_task  # noqa: E402
from ttc.engine.checkpoint import load_checkpoint  # noqa: E402
from ttc.engine.memory import measure_step  # noqa: E402


def deq_problem(checkpoint: str | None, size: int, n: int, seed: int):
    if checkpoint:
        ck = load_checkpoint(checkpoint)
        model, task = ck.model, get_task(ck.task)
    else:
        task = get_task("prefix_sums")
        model = build_model(ModelConfig(family="deq", arch="conv1d", in_channels=task.in_channels, width=64,
                                        depth=2, layers=30, norm=True), seed=0)
    xs, ys = task.generate(size, n, seed)
    return model.eval(), task.encode(torch.from_numpy(xs)), torch.from_numpy(ys).long()


def solver_nfe(model, x, tol: float, max_iter: int) -> dict:
    """Per solver: batch NFE, median stop step of converged samples, fractions converged/diverged, seconds."""
    out = {}
    with torch.no_grad():
        e = model.encoder(x)
        f = lambda z: model.f(z, e)
        for method in ("fixed_point", "anderson", "broyden"):
            t0 = time.perf_counter()
            _, st = solvers.solve(f, torch.zeros_like(e), method, tol=tol, max_iter=max_iter)
            conv = st.converged
            out[method] = {"nfe": st.nfe, "converged": float(conv.float().mean()),
                           "diverged": float(st.diverged.float().mean()),
                           "median_stop_step_converged":
                               float(st.stop_step[conv].float().median()) if conv.any() else None,
                           "seconds": time.perf_counter() - t0}
    return out


def vs_torchdeq(f, z0, m: int, lam: float, tol: float, max_iter: int, repeats: int) -> dict:
    """Our Anderson and torchdeq 0.1.0's on the same f and z0, alternating; wall time per call as the best
    of `repeats` (the least disturbed by other work on a shared machine) and the median."""
    from torchdeq.solver import get_solver

    td = get_solver("anderson")
    ours_t, theirs_t = [], []
    for _ in range(repeats):
        a = solvers.Counted(f)
        t0 = time.perf_counter()
        z, st = solvers.solve(a, z0, "anderson", tol=tol, max_iter=max_iter, m=m, lam=lam)
        ours_t.append(time.perf_counter() - t0)
        b = solvers.Counted(f)
        t0 = time.perf_counter()
        z_td, _, info = td(b, z0, max_iter=max_iter, tol=tol, stop_mode="rel", m=m, lam=lam)
        theirs_t.append(time.perf_counter() - t0)
    return {"m": m, "lam": lam, "tol": tol,
            "ours": {"nfe": a.calls, "converged": float(st.converged.float().mean()),
                     "seconds": min(ours_t), "seconds_median": statistics.median(ours_t)},
            "torchdeq": {"nfe": b.calls, "converged": float((info["rel_lowest"] < tol).float().mean()),
                         "seconds": min(theirs_t), "seconds_median": statistics.median(theirs_t)},
            "fixed_point_rel_diff": float((z - z_td).norm() / z_td.norm())}


def contractive(B=16, D=64, rho=0.97, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    W = Q @ torch.diag(torch.linspace(-0.5, rho, D)) @ Q.T
    U = torch.randn(B, D, generator=g)
    return (lambda z: torch.tanh(z @ W.T + U)), torch.zeros(B, D)


def memory_ratios(model, x, y) -> dict:
    model.settings = model.settings.updated(backward_solver={"max_iter": 30})  # a private copy: its own default
    rows = {(mo, k): measure_step(model, x, y, mo, k) for mo in ("unrolled", "implicit", "jfb") for k in (10, 100, 1000)
            if not (mo == "unrolled" and k == 1000)}
    s = {f"{mo}@{k}": r["saved_bytes"] for (mo, k), r in rows.items()}
    return {"saved_bytes": s,
            "implicit_1000_over_10": s["implicit@1000"] / s["implicit@10"],
            "jfb_1000_over_10": s["jfb@1000"] / s["jfb@10"],
            "unrolled_100_over_implicit_100": s["unrolled@100"] / s["implicit@100"],
            "unrolled_100_over_10": s["unrolled@100"] / s["unrolled@10"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    model, x, y = deq_problem(a.checkpoint, a.size, a.n, seed=0)
    with torch.no_grad():
        e = model.encoder(x)
        deq_f = lambda z: model.f(z, e)
        z0 = torch.zeros_like(e)
        report = {
            "deq": a.checkpoint or "random prefix_sums deq (width 64, depth 2, norm)",
            "size": a.size, "n": a.n, "tol": a.tol,
            "solvers_on_deq": solver_nfe(model, x, a.tol, a.max_iter),
            "vs_torchdeq_on_deq": [vs_torchdeq(deq_f, z0, m, lam, a.tol, a.max_iter, a.repeats)
                                   for m, lam in ((5, 1e-4), (6, 1e-4))],
            "solvers_on_contractive_tanh": {
                meth: solvers.solve(*contractive(), meth, tol=a.tol, max_iter=a.max_iter)[1].nfe
                for meth in ("fixed_point", "anderson", "broyden")},
            "vs_torchdeq_on_contractive_tanh": [vs_torchdeq(*contractive(), m, lam, tol, a.max_iter, a.repeats)
                                                for m, lam, tol in ((5, 1e-4, 1e-4), (5, 1e-4, 1e-6))],
        }
    mx, my = x[:2, :, :8], y[:2, :8]  # memory on a small step: the ratios do not depend on batch or length
    report["memory"] = memory_ratios(model, mx, my)
    if a.json:
        print(json.dumps(report, indent=1))
        return
    print(f"DEQ: {report['deq']}, prefix_sums size {a.size}, {a.n} problems, rel tol {a.tol}")
    for meth, r in report["solvers_on_deq"].items():
        print(f"  {meth:>11}: batch NFE {r['nfe']:>4}, converged {r['converged']:.0%}, diverged {r['diverged']:.0%}, "
              f"median stop step (converged) {r['median_stop_step_converged']}, {r['seconds']:.2f}s")
    print("contractive tanh (16 x 64, spectrum up to 0.97), batch NFE:", report["solvers_on_contractive_tanh"])
    for name in ("vs_torchdeq_on_deq", "vs_torchdeq_on_contractive_tanh"):
        print(name)
        for r in report[name]:
            o, t = r["ours"], r["torchdeq"]
            print(f"  m={r['m']} lam={r['lam']} tol={r['tol']}: ours NFE {o['nfe']} ({o['converged']:.0%} conv) "
                  f"{o['seconds'] * 1e3:.1f} ms (median {o['seconds_median'] * 1e3:.1f}) | torchdeq NFE {t['nfe']} "
                  f"({t['converged']:.0%} conv) {t['seconds'] * 1e3:.1f} ms (median {t['seconds_median'] * 1e3:.1f}) "
                  f"| fixed points differ by {r['fixed_point_rel_diff']:.1e}")
    mem = report["memory"]
    print("memory (saved bytes):", mem["saved_bytes"])
    print(f"  implicit 1000/10 = {mem['implicit_1000_over_10']:.3f}, jfb 1000/10 = {mem['jfb_1000_over_10']:.3f}, "
          f"unrolled/implicit at 100 = {mem['unrolled_100_over_implicit_100']:.1f}, "
          f"unrolled 100/10 = {mem['unrolled_100_over_10']:.2f}")


if __name__ == "__main__":
    main()
