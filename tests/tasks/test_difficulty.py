"""Difficulty: each task's measures against brute force, problems drawn at a difficulty, solved_at, refusals."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tasks import get_task
from tasks.difficulty import longest_run
from ttc.engine.evaluate import solved_from


def brute_chain(a: list[int], b: list[int]) -> int:
    """The longest run of 1s in c_1..c_L, c_0 = 0, c_{i+1} = [a_i + b_i + c_i >= 2], by hand."""
    c, run, best = 0, 0, 0
    for ai, bi in zip(a, b, strict=True):
        c = int(ai + bi + c >= 2)
        run = run + 1 if c else 0
        best = max(best, run)
    return best


def test_carry_chain_matches_brute_force_on_every_4_bit_pair():
    task = get_task("addition")
    pairs = [(a, b) for a in itertools.product((0, 1), repeat=4) for b in itertools.product((0, 1), repeat=4)]
    x = np.array([[a, b] for a, b in pairs], dtype=np.uint8)
    got = task.difficulty(x, np.zeros((len(x), 5), np.uint8))["carry_chain"]
    want = [brute_chain(list(a), list(b)) for a, b in pairs]
    assert got.tolist() == want
    assert max(want) == 4 and min(want) == 0


def test_longest_run_matches_brute_force():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(200, 17))
    want = [max((len(list(g)) for k, g in itertools.groupby(row) if k == 1), default=0) for row in bits]
    assert longest_run(bits).tolist() == want


@pytest.mark.parametrize("size,d", [(8, 0), (8, 1), (8, 8), (64, 40), (300, 7), (2048, 2000)])
def test_addition_drawn_at_a_chain_has_exactly_that_chain_and_the_right_sum(size, d):
    task = get_task("addition")
    x, y = task.generate(size, 12, 5, difficulty=d)
    assert task.difficulty(x, y)["carry_chain"].tolist() == [d] * 12
    for row, s in zip(x[:4], y[:4], strict=True):
        a = int("".join(map(str, row[0][::-1])), 2)
        b = int("".join(map(str, row[1][::-1])), 2)
        assert a + b == int("".join(map(str, s[::-1])), 2)
    again, _ = task.generate(size, 12, 5, difficulty=d)
    assert (again == x).all()  # seeded


def test_prefix_sums_dependency_matches_brute_force_and_draws_exactly():
    task = get_task("prefix_sums")
    x, y = task.generate(12, 300, 1)
    want = [12 - next((i for i, v in enumerate(r) if v), 12) for r in x]
    assert task.difficulty(x, y)["dependency"].tolist() == want
    for d in (0, 1, 5, 12):
        xd, yd = task.generate(12, 20, 2, difficulty=d)
        assert task.difficulty(xd, yd)["dependency"].tolist() == [d] * 20
        assert (yd == np.cumsum(xd, axis=1) % 2).all()


def dead_end_filling_rounds(open_: np.ndarray, start: tuple, goal: tuple) -> int:
    """Rounds of dead-end filling by hand: each round fills every open cell (not start or goal) with at most one
    open neighbour; the count until nothing changes."""
    grid = open_.copy().astype(bool)
    rounds = 0
    while True:
        fill = []
        for i, j in zip(*np.nonzero(grid), strict=True):
            if (i, j) in (start, goal):
                continue
            nb = sum(grid[i + di, j + dj] for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)))
            if nb <= 1:
                fill.append((i, j))
        if not fill:
            return rounds
        for c in fill:
            grid[c] = False
        rounds += 1


@pytest.mark.parametrize("variant", ["dfs", "kruskal"])
def test_maze_measures_match_dead_end_filling_by_hand(variant):
    task = get_task("mazes")
    x, y = task.generate(9, 12, 3, variant=variant)
    d = task.difficulty(x, y)
    assert d["path_length"].tolist() == y.reshape(12, -1).sum(axis=1).tolist()
    for m in range(12):
        start = tuple(int(v) for v in np.argwhere(x[m, 1])[0])
        goal = tuple(int(v) for v in np.argwhere(x[m, 2])[0])
        assert dead_end_filling_rounds(x[m, 0], start, goal) == d["dead_end"][m]


@pytest.mark.parametrize("variant", ["dfs", "wilson"])
def test_mazes_drawn_at_a_path_length_have_at_least_that_path(variant):
    task = get_task("mazes")
    x, y = task.generate(17, 20, 4, variant=variant, difficulty=41)
    d = task.difficulty(x, y)["path_length"]
    assert (d >= 41).all()
    # the target is still one simple start-goal path: two ends (start and goal) with one path neighbour each, every
    # other path cell with two
    for m in range(5):
        p = y[m].astype(int)
        nb = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])[p[1:-1, 1:-1] == 1]
        assert (nb == 1).sum() == 2 and ((nb == 1) | (nb == 2)).all()
        assert (y[m][x[m, 1] == 1] == 1).all() and (y[m][x[m, 2] == 1] == 1).all()


def test_solved_at_against_a_hand_made_curve():
    # right from iteration 1 and never wrong
    assert solved_from(0, True, 10) == 1
    # wrong at iterations 1..4 and 6, right from 7 on
    assert solved_from(6, True, 10) == 7
    # wrong at the end
    assert solved_from(10, False, 10) is None
    assert solved_from(3, False, 10) is None


def test_eval_json_gives_difficulty_and_solved_at(cli, tmp_path):
    data = tmp_path / "a.npz"
    r = cli("data", "--task", "addition", "--size", "24", "--difficulty", "12", "--n", "6", "--seed", "3",
            "--out", data)
    assert r.rc == 0, r.err
    r = cli("eval", "--checkpoint", "checkpoints/addition-recursive.safetensors", "--data", data, "--iters", "40",
            "--json", "--quiet", "--precision", "fp32")
    assert r.rc == 0, r.err
    out = json.loads(r.out)
    assert out["difficulty_name"] == "carry_chain" and out["difficulty"] == [12] * 6
    assert len(out["solved_at"]) == 6 and out["reach_per_iteration"] == 5
    acc = out["accuracy"]
    for k in out["solved_at"]:
        assert k is not None and 1 <= k <= 40
    # the curve and solved_at tell the same story: at iteration k, the solved problems are at least those solved by k
    for k in range(1, 41):
        assert acc[k - 1] * 6 >= sum(1 for s in out["solved_at"] if s is not None and s <= k) - 1e-9


@pytest.mark.parametrize("args,needle", [
    (["--task", "addition", "--size", "16", "--difficulty", "17"], "impossible at size 16"),
    (["--task", "mazes", "--size", "9", "--difficulty", "500"], "impossible at size 9"),
    (["--task", "addition", "--size", "16", "--difficulty", "-1"], "--difficulty"),
    (["--task", "addition", "--size", "16", "--difficulty", "x"], "--difficulty"),
])
def test_bad_difficulty_is_refused_in_one_line(cli, tmp_path, args, needle):
    r = cli("data", *args, "--n", "3", "--out", tmp_path / "x.npz")
    assert r.rc == 2 and r.err.startswith("error:") and needle in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.npz").exists()


def test_find_frontier_lands_in_the_band_on_a_trained_maze_model(one_thread):
    from ttc.engine.checkpoint import load_checkpoint
    from ttc.engine.frontier import find_frontier

    ck = load_checkpoint("checkpoints/mazes-recursive.safetensors")
    task = get_task("mazes")
    out = find_frontier(ck.model, task, 9, 60, n=10, seed=4)
    values = [v for v, _ in out["scanned"]]
    assert values[0] == 9 and out["value"] in values
    if out["in_band"]:
        assert 0.2 <= out["best_accuracy"] <= 0.9
        assert all(acc > 0.9 for v, acc in out["scanned"] if v < out["value"])
    else:  # the scan jumped over the band and bisection ran out of room: it says so
        assert all(not 0.2 <= acc <= 0.9 for _, acc in out["scanned"])


def test_find_frontier_stops_at_the_cost_cap_it_is_given(one_thread):
    # `analyze --frontier --max-cost C` scans only what C allows: a cap between the cost at 9 and at 17 stops the
    # doubling after 9 (the same scan with the default cap goes on)
    from ttc.engine import limits
    from ttc.engine.checkpoint import load_checkpoint
    from ttc.engine.frontier import find_frontier

    ck = load_checkpoint("checkpoints/mazes-recursive.safetensors")
    task = get_task("mazes")
    cap = limits.run_cost(task, 9, 10, 60, ck.config.width) * 1.5
    assert cap < limits.run_cost(task, 17, 10, 60, ck.config.width)
    out = find_frontier(ck.model, task, 9, 60, n=10, seed=4, max_cost=cap)
    assert [v for v, _ in out["scanned"]] == [9] and not out["in_band"]


def test_analyze_frontier_needs_a_size_or_scans_sizes(cli):
    r = cli("analyze", "--checkpoint", "checkpoints/addition-recursive.safetensors", "--iters", "5", "--n", "4")
    assert r.rc == 2 and "--size is required without --frontier" in r.err
    r = cli("analyze", "--checkpoint", "checkpoints/addition-recursive.safetensors", "--size", "16", "--frontier",
            "--difficulty", "3", "--iters", "5", "--n", "4")
    assert r.rc == 2 and "drop --difficulty" in r.err
