"""Sudoku: unique puzzles at an exact blank count, the propagation measure, file checks, the relational core, the
grid's figure, and problems from the independent generator."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ModelConfig, build_model, family_names
from tasks import TaskError, get_task, load_npz, save_npz
from tasks import sudoku as S

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]

# Norvig's "hardest" example (a puzzle single-digit propagation cannot finish) and a published easy puzzle
HARD = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def grid(text: str) -> list[int]:
    return [0 if ch == "." else int(ch) for ch in text]


def brute_count(g: list[int], limit: int = 2) -> int:
    """Solutions up to limit by plain backtracking in reading order (no propagation): shares nothing with S."""
    try:
        i = g.index(0)
    except ValueError:
        return 1
    r, c = divmod(i, 9)
    used = {g[9 * r + k] for k in range(9)} | {g[9 * k + c] for k in range(9)}
    used |= {g[9 * (3 * (r // 3) + a) + 3 * (c // 3) + b] for a in range(3) for b in range(3)}
    found = 0
    for d in set(range(1, 10)) - used:
        g[i] = d
        found += brute_count(g, limit - found)
        if found >= limit:
            break
    g[i] = 0
    return found


@pytest.mark.parametrize("blanks", [1, 20, 45, 52])
def test_puzzles_have_exactly_the_blanks_and_one_solution(blanks):
    x, y = get_task("sudoku").generate(blanks, 6, seed=3)
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and x.shape == y.shape == (6, 9, 9)
    assert ((x == 0).reshape(6, -1).sum(1) == blanks).all()
    assert ((x == y) | (x == 0)).all()  # givens agree with the solution
    for p, t in zip(x, y, strict=True):
        assert S.valid_solution(t)
        if blanks <= 45:  # plain backtracking is quick there
            assert brute_count(p.reshape(81).tolist()) == 1
        assert S.solutions(p.reshape(81).tolist(), 2) == [t.reshape(81).tolist()]


def test_solver_counts_solutions_of_published_puzzles():
    assert len(S.solutions(grid(EASY))) == 1
    assert len(S.solutions(grid(HARD))) == 1
    two = grid(EASY)
    sol = S.solutions(two)[0]
    # blank a whole row's givens and two cells that can swap: still at least one solution, counted up to 2
    assert brute_count(grid(EASY)) == 1 and S.valid_solution(np.array(sol))
    assert len(S.solutions([0] * 81, 2)) == 2


def test_propagation_rounds_measure():
    sol = S.solutions(grid(EASY))[0]
    one = sol.copy()
    one[0] = 0
    assert S.propagation_rounds(one) == 1
    assert S.propagation_rounds(sol) == 0
    assert S.propagation_rounds(grid(HARD)) == S.NEEDS_SEARCH
    assert S.propagation_rounds(grid(EASY)) >= 2
    task = get_task("sudoku")
    x, y = task.generate(45, 10, seed=0)
    d = task.difficulty(x, y)["propagation_rounds"]
    assert d.shape == (10,) and d.dtype == np.int64 and ((d >= 1) | (d == S.NEEDS_SEARCH)).all()


def test_generation_is_seeded_and_sizes_are_checked():
    task = get_task("sudoku")
    a, b = task.generate(30, 3, seed=1), task.generate(30, 3, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], task.generate(30, 3, seed=2)[1])
    for bad in (0, 59, 81):
        with pytest.raises(TaskError, match="1..58"):
            task.generate(bad, 1, seed=0)
    assert task.size_of(a[0]) == 30


def test_files_with_bad_puzzles_are_refused_in_one_line(tmp_path):
    task = get_task("sudoku")
    x, y = task.generate(40, 4, seed=0)
    good = tmp_path / "good.npz"
    save_npz(good, "sudoku", 40, x, y)
    assert load_npz(good)[1] == 40
    cases = {}
    bad = x.copy()
    given = np.argwhere(bad[0] > 0)[0]
    bad[0][tuple(given)] = bad[0][tuple(given)] % 9 + 1
    cases["contradict"] = (bad, y)
    swapped = y.copy()
    swapped[1, 0, 0], swapped[1, 0, 1] = 5, 5
    cases["not a valid grid|contradict"] = (x, swapped)
    big = x.copy()
    big[2, 0, 0] = 12
    cases["0 \\(blank\\) to 9"] = (big, y)
    zero = y.copy()
    zero[0, 0, 0] = 0
    cases["1 to 9"] = (x, zero)
    wrong_count = x.copy()
    wrong_count[3][wrong_count[3] == 0] = y[3][wrong_count[3] == 0]
    cases["blank cells"] = (wrong_count, y)
    for i, (pattern, (xi, yi)) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.npz"
        save_npz(path, "sudoku", 40, xi, yi)
        with pytest.raises(TaskError, match=pattern) as e:
            load_npz(path)
        assert "\n" not in str(e.value)


def test_data_and_eval_commands_take_sudoku_and_refuse_a_bad_file(tmp_path, capsys):
    from ttc.tools.cli import main

    out = tmp_path / "s.npz"
    assert main(["data", "--task", "sudoku", "--size", "45", "--n", "5", "--seed", "0", "--out", str(out)]) == 0
    task, size, x, y = load_npz(out)
    assert task == "sudoku" and size == 45 and x.shape == (5, 9, 9)
    bad = y.copy()
    bad[0, 0, :] = bad[0, 0, ::-1]  # the row still holds 1-9, but columns and givens break
    save_npz(tmp_path / "bad.npz", "sudoku", 45, x, bad)
    from ttc.engine.checkpoint import save_checkpoint

    ck = tmp_path / "sudoku-recursive.safetensors"
    save_checkpoint(ck, build_model(_cfg("recursive"), seed=0), "sudoku", {})
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(ck), "--data", str(out), "--iters", "2", "--json", "--quiet"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "sudoku" and got["n"] == 5 and len(got["accuracy"]) == 2
    assert len(got["difficulty"]) == 5
    assert 0 <= got["converged_right"] <= got["converged"] <= 5 and got["diverged"] >= 0
    rc = main(["eval", "--checkpoint", str(ck), "--data", str(tmp_path / "bad.npz"), "--iters", "2"])
    err = capsys.readouterr().err
    assert rc != 0 and "sudoku" in err and len(err.strip().splitlines()) == 1


def _cfg(family: str, arch: str = "relational", **kw) -> ModelConfig:
    return ModelConfig(family=family, arch=arch, in_channels=10, width=16, depth=1, layers=3, classes=10, **kw)


@pytest.mark.parametrize("family", sorted(family_names()))
def test_every_family_runs_on_the_relational_core(family):
    task = get_task("sudoku")
    x, y = task.generate(40, 2, seed=0)
    model = build_model(_cfg(family, norm=family == "deq"), seed=0)
    states = list(model.stream(task.encode(torch.from_numpy(x)), 3))
    assert states[-1].logits.shape == (2, 10, 9, 9) and torch.isfinite(states[-1].logits).all()
    assert model.reach_per_iteration is None  # a row and a column reach the whole grid


def test_relational_block_sees_rows_columns_and_boxes():
    """Permuting rows inside a band (and columns inside a stack) permutes the output the same way (rows, columns and
    boxes are kept as sets); changing one cell changes every peer's output but, after one block of depth 1, no cell
    that is not its peer."""
    model = build_model(_cfg("recursive"), seed=1).eval()
    task = get_task("sudoku")
    x, _ = task.generate(40, 3, seed=4)
    e = task.encode(torch.from_numpy(x))
    rows = [1, 0, 2, 3, 5, 4, 8, 6, 7]
    cols = [2, 1, 0, 4, 3, 5, 6, 7, 8]
    with torch.no_grad():
        out = model(e, 1)
        perm = model(e[:, :, rows][:, :, :, cols], 1)
    assert torch.allclose(perm, out[:, :, rows][:, :, :, cols], atol=1e-5)
    x2 = x.copy()
    x2[:, 4, 4] = (x2[:, 4, 4] % 9) + 1
    with torch.no_grad():
        diff = (model(task.encode(torch.from_numpy(x2)), 1) - out).abs().amax(dim=(0, 1))
    peers = np.zeros((9, 9), dtype=bool)
    peers[4, :] = peers[:, 4] = True
    peers[3:6, 3:6] = True
    assert (diff.numpy()[peers] > 0).all() and (diff.numpy()[~peers] == 0).all()


def test_a_3x3_convolution_also_serves_sudoku_but_sees_only_neighbours():
    model = build_model(_cfg("recursive", arch="conv2d"), seed=0)
    x, _ = get_task("sudoku").generate(40, 1, seed=0)
    assert model(get_task("sudoku").encode(torch.from_numpy(x)), 2).shape == (1, 10, 9, 9)
    assert model.reach_per_iteration == 3


def test_grid_figure_marks_givens_right_wrong_and_confidence():
    from ttc.app import plots

    task = get_task("sudoku")
    x, y = task.generate(45, 1, seed=0)
    pred = y[0].copy()
    blank = np.argwhere(x[0] == 0)[0]
    pred[tuple(blank)] = pred[tuple(blank)] % 9 + 1
    conf = np.full((9, 9), 0.5)
    fig = plots.example_figure("sudoku", x[0], y[0], pred, "t", confidence=conf)
    names = [tr.name for tr in fig.data if tr.name]
    assert names == ["given", "predicted, right", "predicted, wrong"]
    heat = fig.data[0]
    assert "should be" in heat.customdata[blank[0]][blank[1]] and "0.50" in heat.text[blank[0]][blank[1]]
    assert len(fig.layout.shapes) == 8  # the box borders


def test_independent_generator_makes_unique_symmetric_puzzles(tmp_path):
    spec = importlib.util.spec_from_file_location("independent_data", ROOT / "scripts" / "independent_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = mod.sudoku(41, 4, random.Random(0), "symmetric")
    assert ((x == 0).reshape(4, -1).sum(1) == 41).all()
    assert ((x == 0) == (x[:, ::-1, ::-1] == 0)).all()  # blanks symmetric about the centre
    for p, t in zip(x, y, strict=True):
        assert S.solutions(p.reshape(81).tolist(), 2) == [t.reshape(81).tolist()]
    path = tmp_path / "i.npz"
    save_npz(path, "sudoku", 41, x, y)
    assert load_npz(path)[0] == "sudoku"


def test_report_runs_sudoku_at_its_ladder_of_blank_counts():
    from ttc.app.settings import sweep_sizes
    from ttc.tools.report import report_sizes

    assert report_sizes("sudoku", 45, (1, 2, 4, 8, 16)) == {1: 45, 2: 48, 4: 52, 8: 55, 16: 58}
    assert report_sizes("prefix_sums", 32, (1, 4)) == {1: 32, 4: 128}
    assert sweep_sizes("sudoku", 45) == [35, 40, 45, 48]
