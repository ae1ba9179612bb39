"""Mazes: find the path from start to goal. Perfect mazes (one path) from four carving algorithms, and a `loops`
variant: a dfs maze with a tenth of its inner walls knocked out, so that several paths exist; its target is every
cell on some shortest start-goal path (unique, unlike "a shortest path": a model is not asked to break ties).

Size s (odd) is the maze's side in grid cells without its border, as in the easy-to-hard literature:
s = 9 holds 5x5 maze cells. The grid has side s + 2 (a wall border). Maze cell (i, j) sits at grid
(1 + 2i, 1 + 2j); a passage between two neighbouring cells opens the grid cell between them.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, TaskError, check_count, check_seed
from .difficulty import check_difficulty

DIFFICULTY_TRIES = 64  # mazes carved per problem at most when drawing a path of at least D cells


def _tree_distances(parent: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray]:
    """(distance in tree edges from root, parent pointers rooted at root) of the spanning tree given by parent."""
    total = len(parent)
    adj: list[list[int]] = [[] for _ in range(total)]
    for c, p in enumerate(parent):
        if p != c and p >= 0:
            adj[c].append(int(p))
            adj[int(p)].append(c)
    dist = np.full(total, -1, dtype=np.int64)
    par = np.full(total, -1, dtype=np.int64)
    dist[root], par[root] = 0, root
    queue = [root]
    for c in queue:
        for nc in adj[c]:
            if dist[nc] < 0:
                dist[nc], par[nc] = dist[c] + 1, c
                queue.append(nc)
    return dist, par


def _at_least(parent: np.ndarray, d: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int] | None:
    """Re-root a carved maze so that its start-goal path has at least d grid cells (a path of e tree edges covers
    2e + 1 grid cells): a random start, or the far end of the tree from it when that start is too central; the goal
    uniformly among the cells far enough. None when the maze has no such path."""
    total = len(parent)
    start = int(rng.integers(total))
    dist, par = _tree_distances(parent, start)
    if 2 * int(dist.max()) + 1 < d:
        start = int(rng.choice(np.flatnonzero(dist == dist.max())))  # an end of a longest path (trees: diameter)
        dist, par = _tree_distances(parent, start)
    far = np.flatnonzero(2 * dist + 1 >= d)
    if far.size == 0:
        return None
    return par, start, int(rng.choice(far))

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


def _endpoints(total: int, rng: np.random.Generator) -> tuple[int, int]:
    start = int(rng.integers(total))
    goal = int(rng.integers(total - 1))
    return start, goal + (goal >= start)


def _neighbours(c: int, cells: int) -> list[int]:
    ci, cj = divmod(c, cells)
    return [(ci + di) * cells + cj + dj for di, dj in _DIRS if 0 <= ci + di < cells and 0 <= cj + dj < cells]


def _root_tree(edges: list[tuple[int, int]], total: int, start: int) -> np.ndarray:
    """Parent pointers of the spanning tree given by its edges, rooted at start (breadth first)."""
    adj: list[list[int]] = [[] for _ in range(total)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    parent = np.full(total, -1, dtype=np.int64)
    parent[start] = start
    queue = [start]
    for c in queue:
        for nc in adj[c]:
            if parent[nc] < 0:
                parent[nc] = c
                queue.append(nc)
    return parent


def _kruskal(cells: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Randomised Kruskal: walls in random order, opened when they join two components (many short dead ends)."""
    total = cells * cells
    start, goal = _endpoints(total, rng)
    walls = [(c, c + 1) for c in range(total) if (c + 1) % cells] + [(c, c + cells) for c in range(total - cells)]
    root = list(range(total))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    edges = []
    for w in rng.permutation(len(walls)):
        a, b = walls[w]
        ra, rb = find(a), find(b)
        if ra != rb:
            root[ra] = rb
            edges.append((a, b))
    return _root_tree(edges, total, start), start, goal


def _prim(cells: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Randomised Prim: grow one tree from a random cell through a random frontier edge each step."""
    total = cells * cells
    start, goal = _endpoints(total, rng)
    seed_cell = int(rng.integers(total))
    inside = np.zeros(total, dtype=bool)
    inside[seed_cell] = True
    frontier = [(seed_cell, n) for n in _neighbours(seed_cell, cells)]
    edges = []
    while frontier:
        i = int(rng.integers(len(frontier)))
        frontier[i], frontier[-1] = frontier[-1], frontier[i]
        a, b = frontier.pop()
        if inside[b]:
            continue
        inside[b] = True
        edges.append((a, b))
        frontier.extend((b, n) for n in _neighbours(b, cells) if not inside[n])
    return _root_tree(edges, total, start), start, goal


def _wilson(cells: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Wilson's algorithm: loop-erased random walks, a uniformly random spanning tree."""
    total = cells * cells
    start, goal = _endpoints(total, rng)
    inside = np.zeros(total, dtype=bool)
    inside[int(rng.integers(total))] = True
    nxt = np.full(total, -1, dtype=np.int64)
    edges = []
    for c0 in rng.permutation(total):
        c = int(c0)
        while not inside[c]:  # walk until the tree, remembering only the last exit of each cell
            nb = _neighbours(c, cells)
            nxt[c] = nb[int(rng.integers(len(nb)))]
            c = int(nxt[c])
        c = int(c0)
        while not inside[c]:
            inside[c] = True
            edges.append((c, int(nxt[c])))
            c = int(nxt[c])
    return _root_tree(edges, total, start), start, goal


def _dfs(cells: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    parent, start, goal, _ = _carve(cells, rng)
    return parent, start, goal


# perfect-maze generators; "dfs" (long corridors, few branches) is the default and the data contract's; "loops"
# carves a dfs maze and then opens LOOP_FRACTION x (maze cells) of the walls between two cells
GENERATORS = {"dfs": _dfs, "kruskal": _kruskal, "prim": _prim, "wilson": _wilson, "loops": _dfs}
LOOP_FRACTION = 0.1


def _open_loops(grid: np.ndarray, cells: int, rng: np.random.Generator) -> None:
    """Open round(LOOP_FRACTION x cells^2) (at least 1) random walls that separate two neighbouring maze cells."""
    side = grid.shape[0]
    walls = [(i, j) for i in range(1, side - 1) for j in range(1, side - 1)
             if (i % 2) != (j % 2) and not grid[i, j]]
    k = min(len(walls), max(1, int(round(LOOP_FRACTION * cells * cells))))
    for w in rng.choice(len(walls), size=k, replace=False) if walls else []:
        grid[walls[int(w)]] = 1


def grid_distances(open_: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """(H, W) breadth-first distances (4-neighbour steps over open cells) from the open cells where `sources` is
    true, -1 where unreachable; one ring of the frontier per step, vectorised over the ring. The wall border keeps
    the flat neighbours (+-1, +-W) of an open cell inside its row."""
    w = open_.shape[1]
    flat_open = open_.reshape(-1).astype(bool)
    dist = np.full(open_.size, -1, dtype=np.int64)
    frontier = np.flatnonzero(sources.reshape(-1) & flat_open)
    dist[frontier] = 0
    d = 0
    while frontier.size:
        nb = np.concatenate([frontier - 1, frontier + 1, frontier - w, frontier + w])
        nb = nb[(nb >= 0) & (nb < open_.size)]
        nb = np.unique(nb[flat_open[nb] & (dist[nb] < 0)])
        d += 1
        dist[nb] = d
        frontier = nb
    return dist.reshape(open_.shape)


def shortest_path_cells(grid: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
    """uint8 map of every open cell on some shortest start-goal path: d(start, c) + d(c, goal) = d(start, goal)."""
    def at(cell: tuple[int, int]) -> np.ndarray:
        src = np.zeros(grid.shape, dtype=bool)
        src[cell] = True
        return src

    ds, dg = grid_distances(grid, at(start)), grid_distances(grid, at(goal))
    return ((ds >= 0) & (dg >= 0) & (ds + dg == ds[goal])).astype(np.uint8)


class Mazes:
    """inputs (n, 3, s+2, s+2): open cells, start, goal; targets (n, s+2, s+2): the start-goal path."""

    name = "mazes"
    sizes = SizeRange(5, 401, odd_only=True)
    in_channels = 3
    spatial_dims = 2
    classes = 2
    default_arch = "conv2d"
    train_size = 9
    dashboard_size = 13
    # the renderer's colours by meaning (RGB), in the order a legend lists them
    legend = (("wall", (0, 0, 0)), ("open", (255, 255, 255)), ("start", (0, 170, 0)), ("goal", (210, 0, 0)),
              ("target path", (170, 205, 255)), ("predicted path, right", (30, 80, 200)),
              ("prediction wrong", (255, 140, 0)))
    axis_label = ""

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (3, size + 2, size + 2)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (size + 2, size + 2)

    def size_of(self, inputs: np.ndarray) -> int:
        return int(inputs.shape[-1]) - 2

    variants = tuple(GENERATORS)  # generators of problems; the first is the default
    difficulty_names = ("path_length", "dead_end")
    difficulty_help = ("path_length: grid cells on the start-goal path (drawn as at least D); dead_end: the longest "
                       "dead end, in grid cells from the path, the rounds dead-end filling needs")

    def difficulty_range(self, size: int) -> tuple[int, int]:
        cells = (size + 1) // 2
        return 1, 2 * cells * cells - 1  # a path through every maze cell at most

    def difficulty_drawable(self, size: int) -> int:
        """The longest path drawn without many re-carvings: about half the grid cells of the maze's cells."""
        return (size + 1) ** 2 // 4

    def difficulty(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """path_length: the target's cells; dead_end: the largest distance (4-neighbour steps over open cells) of an
        open cell from the path, i.e. the height of the tallest dead-end subtree (0 when the path is everything)."""
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        path = targets.reshape(len(targets), -1).sum(axis=1).astype(np.int64)
        dead = np.array([max(0, int(grid_distances(inputs[m, 0], targets[m].astype(bool)).max()))
                         for m in range(len(targets))], dtype=np.int64)  # breadth-first from the whole path
        return {"path_length": path, "dead_end": dead}

    def generate(self, size: int, n: int, seed: int, variant: str | None = None,
                 difficulty: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n perfect mazes from the seed, carved by the generator `variant` (default dfs, see GENERATORS); with
        difficulty D, start and goal are placed so that the path has at least D grid cells (a maze is carved
        again, at most DIFFICULTY_TRIES times per problem, when none of its paths is that long)."""
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        name = variant or "dfs"
        if name not in GENERATORS:
            raise TaskError(f"mazes: unknown generator {name!r}; known generators: {', '.join(GENERATORS)}")
        carve = GENERATORS[name]
        # dfs keeps the seed stream it always had (files made earlier reproduce); others get their own
        rng = np.random.default_rng([seed, size, 3] if name == "dfs" else [seed, size, 3, list(GENERATORS).index(name)])
        d = None
        if difficulty is not None:
            d = check_difficulty(self, size, difficulty)
            rng = np.random.default_rng([seed, size, 3, list(GENERATORS).index(name), d, 17])
        side, cells = size + 2, (size + 1) // 2
        x = np.zeros((n, 3, side, side), dtype=np.uint8)
        y = np.zeros((n, side, side), dtype=np.uint8)
        ii, jj = np.divmod(np.arange(cells * cells), cells)
        gi, gj = 1 + 2 * ii, 1 + 2 * jj  # grid coordinates of every maze cell
        for m in range(n):
            parent, start, goal = carve(cells, rng)
            if d is not None:
                longest = 0
                for _ in range(DIFFICULTY_TRIES):
                    got = _at_least(parent, d, rng)
                    if got is not None:
                        parent, start, goal = got
                        break
                    longest = max(longest, 2 * int(_tree_distances(parent, 0)[0].max()) + 1)
                    parent, start, goal = carve(cells, rng)
                else:
                    raise TaskError(f"mazes: no {name} maze of size {size} in {DIFFICULTY_TRIES} carved had a path of "
                                    f"{d} cells (longest about {longest}); ask for a shorter path or the dfs "
                                    f"generator, whose paths are longest")
            grid = x[m, 0]
            grid[gi, gj] = 1
            grid[(gi + gi[parent]) // 2, (gj + gj[parent]) // 2] = 1  # passages (root maps onto itself)
            x[m, 1, gi[start], gj[start]] = 1
            x[m, 2, gi[goal], gj[goal]] = 1
            if name == "loops":
                _open_loops(grid, cells, rng)
                y[m] = shortest_path_cells(grid, (gi[start], gj[start]), (gi[goal], gj[goal]))
                continue
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

    def cell_mask(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: the cells that can be path (open cells). Training counts the loss there only, and a
        prediction is read there only: a wall is never path."""
        return encoded[:, 0] > 0.5

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None) -> dict:
        """{'image': RGB uint8 (H, W, 3)} with walls black, open white, start green, goal red, the target
        path light blue, and a prediction drawn over it: right cells dark blue, wrong cells orange."""
        inputs, target = np.asarray(inputs), np.asarray(target).astype(bool)
        if inputs.ndim != 3 or inputs.shape[0] != 3:
            raise TaskError(f"mazes: render expects inputs (3, H, W), got {inputs.shape}")
        c = dict(self.legend)
        img = np.zeros(inputs.shape[1:] + (3,), dtype=np.uint8)
        img[:] = c["wall"]
        img[inputs[0] == 1] = c["open"]
        img[target] = c["target path"]
        out = {"image": img, "correct": None}
        if pred is not None:
            pred = np.asarray(pred).astype(bool)
            img[pred & target] = c["predicted path, right"]
            img[pred != target] = c["prediction wrong"]
            out["correct"] = bool((pred == target).all())
        img[inputs[1] == 1] = c["start"]
        img[inputs[2] == 1] = c["goal"]
        return out
