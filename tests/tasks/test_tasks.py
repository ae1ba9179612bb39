"""Tasks: labels against independent computations, perfect mazes, seeds, sizes, rendering, .npz I/O."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import pytest
import torch

from tasks import TASKS, TaskError, get_task, load_npz, save_npz, tensors

pytestmark = pytest.mark.usefixtures("one_thread")

# ---- labels, each checked by a computation that shares nothing with the generator -------------------


@pytest.mark.parametrize("size", [2, 3, 17, 64, 1000])
def test_prefix_sum_targets_are_running_parity_by_cumulative_sum(size):
    x, y = get_task("prefix_sums").generate(size, 40, seed=5)
    assert x.shape == y.shape == (40, size) and x.dtype == y.dtype == np.uint8
    for bits, target in zip(x.tolist(), y.tolist(), strict=True):
        # Python integers, accumulated one bit at a time
        assert target == [s % 2 for s in itertools.accumulate(bits)]


def _lsb_first_to_int(bits) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


@pytest.mark.parametrize("size", [1, 2, 8, 63, 64, 200])
def test_addition_targets_are_the_python_integer_sum(size):
    x, y = get_task("addition").generate(size, 50, seed=11)
    assert x.shape == (50, 2, size) and y.shape == (50, size + 1)
    for (a, b), s in zip(x, y, strict=True):
        assert _lsb_first_to_int(s) == _lsb_first_to_int(a) + _lsb_first_to_int(b)
    if size > 1:  # the carry into the extra top bit is exercised, not just the easy cases
        assert y[:, -1].any() and not y[:, -1].all()


def _neighbours(r: int, c: int):
    return ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1))


def _bfs_path(open_: np.ndarray, start: tuple, goal: tuple) -> tuple[list, int]:
    """The start-goal path found by breadth-first search over open cells, and how many cells it reached."""
    parent = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for nb in _neighbours(*cell):
            if open_[nb] and nb not in parent:
                parent[nb] = cell
                queue.append(nb)
    assert goal in parent, "goal unreachable from start"
    path, cell = [], goal
    while cell is not None:
        path.append(cell)
        cell = parent[cell]
    return path, len(parent)


def check_perfect_maze(inp: np.ndarray, target: np.ndarray, size: int) -> None:
    side = size + 2
    assert inp.shape == (3, side, side) and target.shape == (side, side)
    open_ = inp[0].astype(bool)
    # a wall border, every maze cell (odd, odd) open, every corner point (even, even) a wall
    assert not (open_[0].any() or open_[-1].any() or open_[:, 0].any() or open_[:, -1].any())
    odd, even = np.arange(1, side - 1, 2), np.arange(0, side, 2)
    assert open_[np.ix_(odd, odd)].all() and not open_[np.ix_(even, even)].any()
    assert open_[np.ix_(odd, odd)].size == ((size + 1) // 2) ** 2
    starts, goals = np.argwhere(inp[1]), np.argwhere(inp[2])
    assert len(starts) == 1 and len(goals) == 1
    start, goal = tuple(starts[0]), tuple(goals[0])
    assert start != goal and open_[start] and open_[goal]
    assert all(v % 2 == 1 for v in start + goal)  # on maze cells, not in passages
    # perfect: the open cells form a tree, i.e. connected with one adjacency fewer than cells,
    # so there is exactly one path between any two cells
    path, reached = _bfs_path(open_, start, goal)
    n_open = int(open_.sum())
    adjacencies = int((open_[:, :-1] & open_[:, 1:]).sum() + (open_[:-1, :] & open_[1:, :]).sum())
    assert reached == n_open, "open cells are not all connected"
    assert adjacencies == n_open - 1, "open cells hold a cycle: some path is not unique"
    assert set(map(tuple, np.argwhere(target))) == set(path)


@pytest.mark.parametrize(
    "size,n", [(5, 40), (7, 30), (9, 30), (11, 10), (15, 10), (21, 5), (33, 4), (59, 3), (101, 2), (201, 2)]
)
def test_mazes_are_perfect_and_target_is_the_bfs_path(size, n):
    x, y = get_task("mazes").generate(size, n, seed=3)
    assert x.dtype == y.dtype == np.uint8 and set(np.unique(x)) <= {0, 1} and set(np.unique(y)) <= {0, 1}
    for inp, target in zip(x, y, strict=True):
        check_perfect_maze(inp, target, size)
    # different mazes, not one maze repeated (a 3x3-cell maze has only 192 layouts, so some repeat there)
    assert len({m.tobytes() for m in x[:, 0]}) >= (n // 2 if size == 5 else n)


def test_maze_check_catches_a_cycle_and_a_wrong_path():
    x, y = get_task("mazes").generate(9, 1, seed=0)
    inp, target = x[0].copy(), y[0].copy()
    check_perfect_maze(inp, target, 9)
    walls = np.argwhere((inp[0] == 0)[1:-1, 1:-1]) + 1  # an inner wall between two cells
    r, c = next(tuple(w) for w in walls if (w[0] % 2) != (w[1] % 2))
    inp[0, r, c] = 1  # opening it closes a loop
    with pytest.raises(AssertionError, match="cycle"):
        check_perfect_maze(inp, target, 9)
    off_path = np.argwhere((x[0, 0] == 1) & (y[0] == 0))[0]
    target[tuple(off_path)] = 1
    with pytest.raises(AssertionError):
        check_perfect_maze(x[0], target, 9)


@pytest.mark.parametrize("generator", ["dfs", "kruskal", "prim", "wilson"])
@pytest.mark.parametrize("size,n", [(5, 20), (9, 20), (17, 6), (33, 3)])
def test_every_maze_generator_makes_perfect_mazes_with_the_bfs_path(generator, size, n):
    x, y = get_task("mazes").generate(size, n, seed=4, variant=generator)
    for inp, target in zip(x, y, strict=True):
        check_perfect_maze(inp, target, size)
    again = get_task("mazes").generate(size, n, seed=4, variant=generator)
    assert all((a == b).all() for a, b in zip((x, y), again, strict=True))  # the seed decides


def _dead_ends(x: np.ndarray) -> float:
    g = x[:, 0].astype(int)
    inner = g[:, 1:-1, 1:-1]
    nb = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return float(((inner == 1) & (nb == 1)).sum(axis=(1, 2)).mean())


def test_generators_differ_in_branching_and_dfs_is_the_default():
    mazes = get_task("mazes")
    dfs, prim = mazes.generate(33, 20, seed=1, variant="dfs"), mazes.generate(33, 20, seed=1, variant="prim")
    assert (mazes.generate(33, 20, seed=1)[0] == dfs[0]).all()  # the data contract's mazes are dfs mazes
    # depth-first mazes have long corridors: far fewer dead ends and far longer paths than Prim's
    assert _dead_ends(prim[0]) > 2 * _dead_ends(dfs[0])
    assert dfs[1].sum() > 2 * prim[1].sum()


def test_unknown_maze_generator_names_the_known_ones():
    with pytest.raises(TaskError, match="unknown generator 'ellers'; known generators: dfs, kruskal, prim, wilson"):
        get_task("mazes").generate(9, 1, seed=0, variant="ellers")


def test_maze_cell_mask_is_the_open_cells():
    mazes = get_task("mazes")
    x, _ = mazes.generate(9, 3, seed=0)
    mask = mazes.cell_mask(mazes.encode(torch.from_numpy(x)))
    assert mask.dtype == torch.bool and (mask.numpy() == (x[:, 0] == 1)).all()


# ---- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,size", [("prefix_sums", 32), ("addition", 32), ("mazes", 9), ("sudoku", 40)])
def test_same_seed_same_data_other_seed_other_data(name, size):
    task = get_task(name)
    x1, y1 = task.generate(size, 20, seed=7)
    x2, y2 = task.generate(size, 20, seed=7)
    x3, y3 = task.generate(size, 20, seed=8)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3) and not np.array_equal(y1, y3)


@pytest.mark.parametrize("name,size", [("prefix_sums", 16), ("addition", 16), ("mazes", 7), ("sudoku", 30)])
def test_generation_leaves_global_random_state_alone(name, size):
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    get_task(name).generate(size, 5, seed=1)
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)


# ---- sizes, counts, seeds ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,lo,hi", [("prefix_sums", 2, 4096), ("addition", 1, 2048), ("mazes", 5, 401),
                                        ("sudoku", 1, 58)])
def test_size_range_is_enforced_and_named(name, lo, hi):
    task = get_task(name)
    assert task.sizes.lo == lo and task.sizes.hi == hi
    task.generate(lo, 1, seed=0)
    for bad in (lo - 1, hi + 1 + (name == "mazes")):
        with pytest.raises(TaskError, match=f"{lo}\\.\\.{hi}"):
            task.generate(bad, 1, seed=0)
    for bad in (7.0, True, "9"):
        with pytest.raises(TaskError, match="integer"):
            task.generate(bad, 1, seed=0)


@pytest.mark.parametrize("size", [6, 10, 200])
def test_even_maze_size_is_refused(size):
    with pytest.raises(TaskError, match="even.*odd"):
        get_task("mazes").generate(size, 1, seed=0)


@pytest.mark.parametrize("n,seed", [(0, 0), (100_001, 0), (1, -1), (1, 2**63), (True, 0), (1, 1.5)])
def test_count_and_seed_out_of_range_are_refused(n, seed):
    with pytest.raises(TaskError, match="must be an integer"):
        get_task("prefix_sums").generate(8, n, seed)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TaskError, match="prefix_sums, addition, mazes, sudoku"):
        get_task("sorting")
    assert set(TASKS) == {"prefix_sums", "addition", "mazes", "sudoku"}


# ---- encoding and rendering -------------------------------------------------------------------------


@pytest.mark.parametrize("name,size", [("prefix_sums", 9), ("addition", 9), ("mazes", 9), ("sudoku", 9)])
def test_encoding_matches_the_target_grid(name, size):
    task = get_task(name)
    x, y = task.generate(size, 4, seed=0)
    assert x.shape[1:] == task.input_shape(size) and y.shape[1:] == task.target_shape(size)
    assert task.size_of(x) == size
    e = task.encode(torch.from_numpy(x))
    assert e.dtype == torch.float32 and e.shape == (4, task.in_channels, *task.target_shape(size))


def test_addition_render_writes_most_significant_bit_first():
    x = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.uint8)  # 1 + 3, LSB first
    y = np.array([0, 0, 1, 0], dtype=np.uint8)  # 4
    r = get_task("addition").render(x, y, pred=np.array([0, 1, 1, 0], dtype=np.uint8))
    assert (r["a"], r["b"], r["target"], r["prediction"]) == ("001", "011", "0100", "0110")
    assert r["correct"] == [True, True, False, True]


def test_prefix_sums_render_marks_each_bit():
    r = get_task("prefix_sums").render(np.array([1, 1, 0]), np.array([1, 0, 0]), pred=np.array([1, 1, 0]))
    assert (r["input"], r["target"], r["prediction"], r["correct"]) == ("110", "100", "110", [True, False, True])


def test_maze_render_draws_walls_path_start_goal_and_prediction():
    x, y = get_task("mazes").generate(9, 1, seed=2)
    img = get_task("mazes").render(x[0], y[0])["image"]
    assert img.shape == (11, 11, 3) and img.dtype == np.uint8
    assert (img[x[0, 0] == 0] == 0).all()  # walls black
    assert tuple(img[tuple(np.argwhere(x[0, 1])[0])]) == (0, 170, 0)
    assert tuple(img[tuple(np.argwhere(x[0, 2])[0])]) == (210, 0, 0)
    r = get_task("mazes").render(x[0], y[0], pred=y[0])
    assert r["correct"] is True
    assert get_task("mazes").render(x[0], y[0], pred=np.zeros_like(y[0]))["correct"] is False


# ---- .npz I/O ---------------------------------------------------------------------------------------


def test_npz_round_trip_keeps_everything(tmp_path):
    x, y = get_task("addition").generate(12, 9, seed=4)
    save_npz(tmp_path / "a.npz", "addition", 12, x, y)
    task, size, x2, y2 = load_npz(tmp_path / "a.npz")
    assert (task, size) == ("addition", 12) and np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x2.dtype == y2.dtype == np.uint8


def test_npz_is_written_at_exactly_the_given_path(tmp_path):
    x, y = get_task("prefix_sums").generate(4, 2, seed=0)
    save_npz(tmp_path / "problems.dat", "prefix_sums", 4, x, y)
    assert [p.name for p in tmp_path.iterdir()] == ["problems.dat"]
    assert load_npz(tmp_path / "problems.dat")[0] == "prefix_sums"


def test_npz_from_another_program_with_bytes_task_name_loads(tmp_path):
    x, y = get_task("prefix_sums").generate(4, 2, seed=0)
    np.savez(tmp_path / "b.npz", task=np.array(b"prefix_sums"), size=np.array(4, dtype=np.int32), inputs=x, targets=y)
    assert load_npz(tmp_path / "b.npz")[:2] == ("prefix_sums", 4)


def test_bare_npy_and_pickled_npz_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3, dtype=np.uint8))
    with pytest.raises(TaskError, match="single array"):
        load_npz(tmp_path / "a.npy")
    np.savez(
        tmp_path / "p.npz",
        task=np.array("prefix_sums"),
        size=np.array(4),
        inputs=np.array([{}]),
        targets=np.array([{}]),
    )
    with pytest.raises(TaskError, match="without pickles"):
        load_npz(tmp_path / "p.npz")


@pytest.mark.parametrize("style", ["hunt", "division"])
def test_independent_maze_generators_make_perfect_mazes_with_the_bfs_path(style, tmp_path):
    """scripts/independent_data.py's mazes (algorithms the task does not offer) are perfect, load as task files, and
    their targets are the start-goal path found here by a breadth-first search of our own."""
    import importlib.util
    import random
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "independent_data", Path(__file__).resolve().parents[2] / "scripts" / "independent_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = mod.mazes(13, 6, random.Random(3), style)
    path = tmp_path / "m.npz"
    save_npz(path, "mazes", 13, x, y)
    assert load_npz(path)[1] == 13
    cells = 7
    for m in range(6):
        grid = x[m, 0].astype(bool)
        opened = int(grid.sum())
        assert opened == 2 * cells * cells - 1  # a spanning tree: cells + (cells^2 - 1) passages
        start = tuple(np.argwhere(x[m, 1])[0])
        goal = tuple(np.argwhere(x[m, 2])[0])
        prev = {start: None}
        queue = deque([start])
        while queue:
            c = queue.popleft()
            for d in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                nb = (c[0] + d[0], c[1] + d[1])
                if grid[nb] and nb not in prev:
                    prev[nb] = c
                    queue.append(nb)
        assert len(prev) == opened  # connected
        want = np.zeros_like(grid)
        c = goal
        while c is not None:
            want[c] = True
            c = prev[c]
        assert np.array_equal(want, y[m].astype(bool))


@pytest.mark.parametrize("size", [5, 9, 17])
def test_loops_variant_has_several_paths_and_targets_every_shortest_path_cell(size):
    """A dfs maze with walls opened: more open cells than a perfect maze; the target is exactly the open cells whose
    distances to start and goal (a breadth-first search written here) add up to the shortest path's length."""
    mazes = get_task("mazes")
    x, y = mazes.generate(size, 12, seed=2, variant="loops")
    cells = (size + 1) // 2
    assert (x[:, 0].reshape(12, -1).sum(1) > 2 * cells * cells - 1).all()  # no longer a tree
    again = mazes.generate(size, 12, seed=2, variant="loops")
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])

    def dist(grid, src):
        d = np.full(grid.shape, -1)
        d[src] = 0
        q = deque([src])
        while q:
            c = q.popleft()
            for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nb = (c[0] + a, c[1] + b)
                if grid[nb] and d[nb] < 0:
                    d[nb] = d[c] + 1
                    q.append(nb)
        return d

    for m in range(12):
        grid = x[m, 0].astype(bool)
        s, g = tuple(np.argwhere(x[m, 1])[0]), tuple(np.argwhere(x[m, 2])[0])
        ds, dg = dist(grid, s), dist(grid, g)
        want = grid & (ds >= 0) & (ds + dg == ds[g])
        assert np.array_equal(want, y[m].astype(bool))
    assert y.any(axis=(1, 2)).all()


def test_a_tasks_optional_attributes_are_declared_in_one_table():
    """Every optional attribute a task may declare has one documented default, read through tasks.optional: a
    task without any (a plugin's) gets the defaults, a shipped one its own, and a name not in the table is an
    error, not a silent None."""
    from tasks import get_task, optional
    from tasks.base import OPTIONAL

    class Bare:
        name = "bare"

    for name, default in OPTIONAL.items():
        assert optional(Bare(), name) == default
    assert optional(get_task("mazes"), "variants")[0] == "dfs" and optional(get_task("sudoku"), "size_ladder")
    assert optional(get_task("prefix_sums"), "cell_mask") is None
    with pytest.raises(KeyError, match="not an optional task attribute"):
        optional(Bare(), "varaints")


@pytest.mark.parametrize("name", ["prefix_sums", "addition", "mazes", "sudoku"])
def test_tensors_is_the_batch_every_model_takes(name):
    task = get_task(name)
    xs, ys = task.generate(task.train_size, 3, seed=5)
    x, y = tensors(task, xs, ys)
    assert x.dtype == torch.float32 and x.shape == (3, task.in_channels, *task.target_shape(task.train_size))
    assert y.dtype == torch.int64 and y.tolist() == ys.tolist()
    assert tensors(task, xs)[1] is None
