"""What the bf16 run's refinement near the fixed point costs and buys: each checkpoint's bf16 probe run with the
switch to float32 (models.precision.REFINE_BELOW) and with it disabled, on the same problems; time, the first
float32 iteration, best and final accuracy, samples certified converged (docs/precision.md).

    python scripts/refine_cost.py checkpoints/mazes-recursive.safetensors --size 33 --n 50 --iters 400
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import precision as prec  # noqa: E402
from tasks import get_task  # noqa: E402
from ttc.engine.checkpoint import load_checkpoint  # noqa: E402
from ttc.engine.probe import probe  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--seed", type=int, default=10**12 + 5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    threshold = prec.REFINE_BELOW
    for path in a.checkpoints:
        ck = load_checkpoint(path)
        task = get_task(ck.task)
        x, y = task.generate(a.size, a.n, seed=a.seed)
        for below in (threshold, 0.0):
            prec.REFINE_BELOW = below
            try:
                t = time.perf_counter()
                recs = list(probe(ck.model, task, x, y, a.iters, precision="bf16"))
                dt = time.perf_counter() - t
            finally:
                prec.REFINE_BELOW = threshold
            first = next((r.k for r in recs if r.precision == "fp32"), None)
            acc = [float(np.mean(r.correct)) for r in recs]
            print(f"{Path(path).name} {'refining' if below else 'bf16 only'}: {dt:.1f} s, first float32 iteration "
                  f"{first}, best {max(acc):.1%} at {int(np.argmax(acc)) + 1}, end {acc[-1]:.1%}, "
                  f"converged {int(recs[-1].converged.sum())} of {a.n}", flush=True)


if __name__ == "__main__":
    main()
