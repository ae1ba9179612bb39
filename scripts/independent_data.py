"""Problems from a generator that shares no code with tasks/: Python's `random` (Mersenne Twister, not numpy's
PCG64) and plain integer arithmetic for the answers. Written in the .npz format `python -m ttc eval --data` reads,
so a checkpoint is scored on problems its training generator never drew.

    python scripts/independent_data.py --task prefix_sums --size 512 --n 200 --seed 5 --out runs/ps512.npz
    python -m ttc eval --checkpoint checkpoints/prefix_sums-recursive.safetensors --data runs/ps512.npz --iters 600
"""

from __future__ import annotations

import argparse
import random

import numpy as np


def prefix_sums(size: int, n: int, rnd: random.Random) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(n):
        bits = [rnd.getrandbits(1) for _ in range(size)]
        parity, out = 0, []
        for b in bits:
            parity ^= b
            out.append(parity)
        xs.append(bits)
        ys.append(out)
    return np.array(xs, dtype=np.uint8), np.array(ys, dtype=np.uint8)


def addition(size: int, n: int, rnd: random.Random) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(n):
        a, b = rnd.getrandbits(size), rnd.getrandbits(size)
        s = a + b  # Python integers: no carry code of ours
        bit = lambda v, i: (v >> i) & 1  # noqa: E731 (least significant bit first)
        xs.append([[bit(a, i) for i in range(size)], [bit(b, i) for i in range(size)]])
        ys.append([bit(s, i) for i in range(size + 1)])
    return np.array(xs, dtype=np.uint8), np.array(ys, dtype=np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["prefix_sums", "addition"], required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rnd = random.Random(f"independent-{a.task}-{a.size}-{a.seed}")
    x, y = (prefix_sums if a.task == "prefix_sums" else addition)(a.size, a.n, rnd)
    np.savez_compressed(a.out, task=np.array(a.task), size=np.array(a.size), inputs=x, targets=y)


if __name__ == "__main__":
    main()
