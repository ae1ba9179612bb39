"""Perfect mazes: find the unique path from start to goal.

Size s (odd) is the maze's side in grid cells without its border, as in the easy-to-hard literature:
s = 9 holds 5x5 maze cells. The grid has side s + 2 (a wall border). Maze cell (i, j) sits at grid
(1 + 2i, 1 + 2j); a passage between two neighbouring cells opens the grid cell between them.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, TaskError, check_count, check_seed

_DIRS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def _carve(cells: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Randomised depth-first search over a cells x cells lattice, rooted at a random cell.

    Returns (parent, start, goal, order): parent[c] is c's parent in the spanning tree (the root is its
    own parent); the tree is the maze, so the path from goal to start follows parents.
    """
    total = cells * cells
    start = int(rng.integers(total))
    goal = int(rng.integers(total - 1))
    goal += goal >= start  # distinct from start
    parent = np.full(total, -1, dtype=np.int64)
    parent[start] = start
    stack = [start]
    # one random direction order per visit, drawn in bulk for speed
    orders = rng.permuted(np.tile(np.arange(4), (total * 2, 1)), axis=1)
    draw = 0
    while stack:
        c = stack[-1]
        ci, cj = divmod(c, cells)
        order = orders[draw % len(orders)]
        draw += 1
        for d in order:
            di, dj = _DIRS[d]
            ni, nj = ci + di, cj + dj
            if 0 <= ni < cells and 0 <= nj < cells:
                nc = ni * cells + nj
                if parent[nc] < 0:
                    parent[nc] = c
                    stack.append(nc)
                    break
        else:
            stack.pop()
    return parent, start, goal, orders


class Mazes:
    """inputs (n, 3, s+2, s+2): open cells, start, goal; targets (n, s+2, s+2): the start-goal path."""

    name = "mazes"
    sizes = SizeRange(5, 401, odd_only=True)
    in_channels = 3
    spatial_dims = 2

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (3, size + 2, size + 2)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size + 2, size + 2)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1]) - 2

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        rng = np.random.default_rng([seed, size, 3])
        side, cells = size + 2, (size + 1) // 2
        x = np.zeros((n, 3, side, side), dtype=np.uint8)
        y = np.zeros((n, side, side), dtype=np.uint8)
        ii, jj = np.divmod(np.arange(cells * cells), cells)
        gi, gj = 1 + 2 * ii, 1 + 2 * jj  # grid coordinates of every maze cell
        for m in range(n):
            parent, start, goal, _ = _carve(cells, rng)
            grid = x[m, 0]
            grid[gi, gj] = 1
            grid[(gi + gi[parent]) // 2, (gj + gj[parent]) // 2] = 1  # passages (root maps onto itself)
            x[m, 1, gi[start], gj[start]] = 1
            x[m, 2, gi[goal], gj[goal]] = 1
            c = goal
            path = y[m]
            while True:
                p = parent[c]
                path[gi[c], gj[c]] = 1
                path[(gi[c] + gi[p]) // 2, (gj[c] + gj[p]) // 2] = 1
                if p == c:
                    break
                c = p
        return x, y

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float()  # (B, 3, H, W)

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """{'image': RGB uint8 (H, W, 3)} with walls black, open white, start green, goal red, the target
        path light blue, and a prediction drawn over it: right cells dark blue, wrong cells orange."""
        inputs, target = np.asarray(inputs), np.asarray(target).astype(bool)
        if inputs.ndim != 3 or inputs.shape[0] != 3:
            raise TaskError(f"mazes: render expects inputs (3, H, W), got {inputs.shape}")
        img = np.zeros(inputs.shape[1:] + (3,), dtype=np.uint8)
        img[inputs[0] == 1] = (255, 255, 255)
        img[target] = (170, 205, 255)
        out = {"image": img, "correct": None}
        if pred is not None:
            pred = np.asarray(pred).astype(bool)
            img[pred & target] = (30, 80, 200)
            img[pred != target] = (255, 140, 0)
            out["correct"] = bool((pred == target).all())
        img[inputs[1] == 1] = (0, 170, 0)
        img[inputs[2] == 1] = (210, 0, 0)
        return out
