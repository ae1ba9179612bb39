"""Problems from a generator that shares no code with tasks/: Python's `random` (Mersenne Twister, not numpy's
PCG64) and plain integer arithmetic for the answers. Written in the .npz format `python -m ttc eval --data` reads,
so a checkpoint is scored on problems its training generator never drew.

    python scripts/independent_data.py --task prefix_sums --size 512 --n 200 --seed 5 --out runs/ps512.npz
    python -m ttc eval --checkpoint checkpoints/prefix_sums-recursive.safetensors --data runs/ps512.npz --iters 600

Sudoku puzzles come from a different algorithm as well: a grid filled cell by cell in reading order by plain
backtracking over sets, then cells dug in pairs symmetric about the centre (`--style symmetric`, the habit of
published puzzle collections; the centre cell alone when the blank count is odd) or one at a time
(`--style random`), each dig kept only if a depth-first solver over Python sets still finds exactly one solution.

    python scripts/independent_data.py --task sudoku --size 45 --n 200 --seed 5 --out runs/sudoku45.npz

Mazes are carved by algorithms the task does not offer: hunt-and-kill (`--style hunt`) or recursive division
(`--style division`, long straight walls), with the path found by breadth-first search.

    python scripts/independent_data.py --task mazes --size 33 --n 100 --style division --seed 5 --out runs/m33.npz
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


def _maze_hunt_and_kill(cells: int, rnd: random.Random) -> set[tuple[int, int]]:
    """Passages (pairs of adjacent maze cells, as flat indices) of a hunt-and-kill maze: a random walk into unvisited
    cells until stuck, then a row-by-row hunt for an unvisited cell next to a visited one."""
    def nbrs(c: int) -> list[int]:
        r, q = divmod(c, cells)
        out = []
        if r > 0:
            out.append(c - cells)
        if r < cells - 1:
            out.append(c + cells)
        if q > 0:
            out.append(c - 1)
        if q < cells - 1:
            out.append(c + 1)
        return out

    seen, passages = {rnd.randrange(cells * cells)}, set()
    cur = next(iter(seen))
    while len(seen) < cells * cells:
        fresh = [c for c in nbrs(cur) if c not in seen]
        if fresh:
            nxt = rnd.choice(fresh)
            passages.add((min(cur, nxt), max(cur, nxt)))
            seen.add(nxt)
            cur = nxt
            continue
        for c in range(cells * cells):  # hunt
            old = [d for d in nbrs(c) if d in seen]
            if c not in seen and old:
                d = rnd.choice(old)
                passages.add((min(c, d), max(c, d)))
                seen.add(c)
                cur = c
                break
    return passages


def _maze_division(cells: int, rnd: random.Random) -> set[tuple[int, int]]:
    """Passages of a recursive-division maze: start with every passage open, split each chamber by a wall with one
    gap, recursively (long straight walls: a texture no carving algorithm of the task has)."""
    passages = set()
    for c in range(cells * cells):
        r, q = divmod(c, cells)
        if q < cells - 1:
            passages.add((c, c + 1))
        if r < cells - 1:
            passages.add((c, c + cells))
    stack = [(0, 0, cells, cells)]  # chambers: top row, left column, height, width (in maze cells)
    while stack:
        r0, q0, h, w = stack.pop()
        if h < 2 and w < 2:
            continue
        horizontal = h > w or (h == w and rnd.random() < 0.5)
        if horizontal and h >= 2:
            cut = rnd.randrange(1, h)  # wall between rows r0 + cut - 1 and r0 + cut
            gap = rnd.randrange(w)
            for k in range(w):
                if k != gap:
                    a = (r0 + cut - 1) * cells + q0 + k
                    passages.discard((a, a + cells))
            stack += [(r0, q0, cut, w), (r0 + cut, q0, h - cut, w)]
        elif w >= 2:
            cut = rnd.randrange(1, w)
            gap = rnd.randrange(h)
            for k in range(h):
                if k != gap:
                    a = (r0 + k) * cells + q0 + cut - 1
                    passages.discard((a, a + 1))
            stack += [(r0, q0, h, cut), (r0, q0 + cut, h, w - cut)]
    return passages


def mazes(size: int, n: int, rnd: random.Random, style: str = "hunt") -> tuple[np.ndarray, np.ndarray]:
    """Perfect mazes in the task's format (walls as grid cells: a maze of (size+1)/2 cells a side on a grid of side
    size+2), carved by hunt-and-kill or recursive division; start and goal two distinct random cells; the target
    the breadth-first path between them."""
    if size < 5 or size % 2 == 0:
        raise SystemExit("mazes: --size must be odd and at least 5")
    cells, side = (size + 1) // 2, size + 2
    xs, ys = [], []
    for _ in range(n):
        passages = (_maze_division if style == "division" else _maze_hunt_and_kill)(cells, rnd)
        grid = np.zeros((side, side), dtype=np.uint8)
        pos = lambda c: (1 + 2 * (c // cells), 1 + 2 * (c % cells))  # noqa: E731
        for c in range(cells * cells):
            grid[pos(c)] = 1
        adj: dict[int, list[int]] = {c: [] for c in range(cells * cells)}
        for a, b in passages:
            (ra, qa), (rb, qb) = pos(a), pos(b)
            grid[(ra + rb) // 2, (qa + qb) // 2] = 1
            adj[a].append(b)
            adj[b].append(a)
        start, goal = rnd.sample(range(cells * cells), 2)
        prev = {start: start}
        queue = [start]
        for c in queue:  # breadth first
            for d in adj[c]:
                if d not in prev:
                    prev[d] = c
                    queue.append(d)
        path = np.zeros((side, side), dtype=np.uint8)
        c = goal
        while True:
            path[pos(c)] = 1
            if c == start:
                break
            p = prev[c]
            path[(pos(c)[0] + pos(p)[0]) // 2, (pos(c)[1] + pos(p)[1]) // 2] = 1
            c = p
        x = np.zeros((3, side, side), dtype=np.uint8)
        x[0] = grid
        x[1][pos(start)] = 1
        x[2][pos(goal)] = 1
        xs.append(x)
        ys.append(path)
    return np.stack(xs), np.stack(ys)


def _sudoku_options(g: list[int], i: int) -> set[int]:
    r, c = divmod(i, 9)
    br, bc = 3 * (r // 3), 3 * (c // 3)
    used = {g[9 * r + k] for k in range(9)} | {g[9 * k + c] for k in range(9)}
    used |= {g[9 * (br + a) + bc + b] for a in range(3) for b in range(3)}
    return set(range(1, 10)) - used


def _sudoku_fill(g: list[int], rnd: random.Random) -> bool:
    """Complete g in reading order by backtracking, digits in a random order."""
    try:
        i = g.index(0)
    except ValueError:
        return True
    opts = list(_sudoku_options(g, i))
    rnd.shuffle(opts)
    for d in opts:
        g[i] = d
        if _sudoku_fill(g, rnd):
            return True
    g[i] = 0
    return False


def _sudoku_count(g: list[int], limit: int = 2) -> int:
    """Solutions of g up to limit: depth first, always at the empty cell with the fewest options."""
    best, best_opts = -1, None
    for i in range(81):
        if g[i] == 0:
            o = _sudoku_options(g, i)
            if best_opts is None or len(o) < len(best_opts):
                best, best_opts = i, o
                if len(o) <= 1:
                    break
    if best < 0:
        return 1
    found = 0
    for d in best_opts:
        g[best] = d
        found += _sudoku_count(g, limit - found)
        if found >= limit:
            break
    g[best] = 0
    return found


def sudoku(size: int, n: int, rnd: random.Random, style: str = "symmetric") -> tuple[np.ndarray, np.ndarray]:
    if not 1 <= size <= 58:
        raise SystemExit("sudoku: --size (blank cells) must be 1..58")
    xs, ys = [], []
    while len(xs) < n:
        sol = [0] * 81
        _sudoku_fill(sol, rnd)
        g = sol.copy()
        cells = list(range(81))
        rnd.shuffle(cells)
        if style == "symmetric":
            groups = [[i, 80 - i] for i in cells if i < 40]
            if size % 2:
                groups.insert(0, [40])
        else:
            groups = [[i] for i in cells]
        blanks = 0
        for group in groups:
            if blanks + len(group) > size:
                continue
            for i in group:
                g[i] = 0
            if _sudoku_count(g) == 1:
                blanks += len(group)
            else:
                for i in group:
                    g[i] = sol[i]
            if blanks == size:
                break
        if blanks == size:  # else: a fresh grid
            xs.append(g)
            ys.append(sol)
    return np.array(xs, dtype=np.uint8).reshape(n, 9, 9), np.array(ys, dtype=np.uint8).reshape(n, 9, 9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["prefix_sums", "addition", "mazes", "sudoku"], required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--style", choices=["symmetric", "random", "hunt", "division"], default=None,
                   help="sudoku: how cells are dug (symmetric, random); mazes: how they are carved (hunt: "
                        "hunt-and-kill, division: recursive division)")
    a = p.parse_args()
    rnd = random.Random(f"independent-{a.task}-{a.size}-{a.seed}")
    if a.task == "sudoku":
        style = a.style or "symmetric"
        rnd = random.Random(f"independent-sudoku-{style}-{a.size}-{a.seed}")
        x, y = sudoku(a.size, a.n, rnd, style)
    elif a.task == "mazes":
        style = a.style or "hunt"
        rnd = random.Random(f"independent-mazes-{style}-{a.size}-{a.seed}")
        x, y = mazes(a.size, a.n, rnd, style)
    else:
        x, y = (prefix_sums if a.task == "prefix_sums" else addition)(a.size, a.n, rnd)
    np.savez_compressed(a.out, task=np.array(a.task), size=np.array(a.size), inputs=x, targets=y)


if __name__ == "__main__":
    main()
