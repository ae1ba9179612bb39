"""What a memory-family checkpoint uses its memory for: slot usage as the answer forms, and an ablation.

    python scripts/memory_usage.py checkpoints/prefix_sums-memory.safetensors --size 128 --iters 100 [--n 200]

Prints one JSON object: accuracy as trained; accuracy with the read cut (the read projection zeroed, so the core
never sees the memory: what the memory contributes); accuracy with the memory frozen at its initial content
(reads work, writes are dropped); per slot, the mean read and write weight (over problems, positions and
iterations) in the first and the last tenth of the run; the read and write entropies and slot norms at a few
iterations. Test problems from the zoo's test seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import get_task  # noqa: E402
from ttc.engine.checkpoint import load_checkpoint  # noqa: E402
from ttc.engine.evaluate import evaluate  # noqa: E402
from ttc.engine.probe import probe  # noqa: E402
from ttc.engine.zoo import TEST_SEED  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--iters", type=int, required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    if "read" not in ck.model.extra_maps:
        raise SystemExit(f"error: {ck.name} is a {ck.family} model, not a memory model")
    task = get_task(ck.task)
    x, y = task.generate(a.size, a.n, TEST_SEED)
    out: dict = {"checkpoint": ck.name, "size": a.size, "iters": a.iters, "n": a.n}
    trained = evaluate(ck.model, task, x, y, a.iters)
    out["trained"] = {**trained.summary().to_dict()}
    cut = copy.deepcopy(ck.model)
    with torch.no_grad():
        cut.read_in.weight.zero_()
        cut.read_in.bias.zero_()
    out["read_cut"] = evaluate(cut, task, x, y, a.iters).summary().to_dict()
    frozen = copy.deepcopy(ck.model)
    with torch.no_grad():  # erase gate -> 0 everywhere: writes change nothing, the memory keeps M_0
        w = frozen.write
        width = w.out_features // 3
        w.weight[width:2 * width].zero_()
        w.bias[width:2 * width].fill_(-1e4)
    out["writes_dropped"] = evaluate(frozen, task, x, y, a.iters).summary().to_dict()
    # slot usage over the run, on the first 50 problems
    m = min(50, a.n)
    reads, writes, series = [], [], []
    for r in probe(ck.model, task, x[:m], y[:m], a.iters, maps_for=m):
        reads.append(r.maps["read"].astype(np.float32).mean(axis=(0, 1)))  # (S,) mean over problems, positions
        writes.append(r.maps["write"].astype(np.float32).mean(axis=(0, 1)))
        series.append({k: float(np.mean(v)) for k, v in r.series.items()} | {"accuracy": r.accuracy})
    reads, writes = np.stack(reads), np.stack(writes)
    tenth = max(1, a.iters // 10)
    out["read_weight_per_slot"] = {"first_tenth": reads[:tenth].mean(0).round(3).tolist(),
                                   "last_tenth": reads[-tenth:].mean(0).round(3).tolist()}
    out["write_weight_per_slot"] = {"first_tenth": writes[:tenth].mean(0).round(3).tolist(),
                                    "last_tenth": writes[-tenth:].mean(0).round(3).tolist()}
    marks = sorted({1, 2, 5, 10, 20, 50, 100, 200, 500, a.iters} & set(range(1, a.iters + 1)))
    out["by_iteration"] = {k: {n: round(v, 4) for n, v in series[k - 1].items()} for k in marks}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
