"""Sudoku: fill a 9x9 grid so that every row, column and 3x3 box holds 1-9 once. `size` is the number of blank cells.

Puzzles are drawn from the seed in three steps: a complete grid from a randomised backtracking solver (digits tried
in a random order, cells in a fixed order), then the cells of a random permutation blanked one after another while
the puzzle keeps a unique solution, until `size` are blank. A blank that would make the solution ambiguous is put
back and the next cell of the permutation tried; a grid whose permutation runs out before `size` blanks (it can
happen from about 55 blanks on) is replaced by a fresh grid, at most GRID_TRIES times per puzzle.

Speed: blanking is monotone (a puzzle with more givens than a unique one is unique too), so the first `size` cells
of the permutation are blanked at once and uniqueness is checked once; only when that puzzle is ambiguous does the
generator go back to blanking one at a time. Uniqueness is decided by constraint propagation (naked and hidden
singles) and, where propagation stops, by a search that counts solutions up to two. The sizes offered, 1..MAX_BLANKS,
are those this draws in reasonable time on one core (about 0.5 ms a puzzle at 45 blanks, 2 ms at 55, 20 ms at 60);
the fewest givens a unique puzzle can have is 17 (McGuire, Tugemann and Civario 2012), 64 blanks, which random
blanking practically never reaches.

Difficulty beyond the blank count (`propagation_rounds`): the rounds of plain constraint propagation that solve a
puzzle, where one round fills, at once, every blank that is a naked single (one candidate left) or a hidden single
(the only place for a digit in its row, column or box) given the cells filled so far; -1 ("needs search") when
propagation stops before the grid is full.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import SizeRange, TaskError, check_count, check_seed

MAX_BLANKS = 58
GRID_TRIES = 50
ALL = 0x1FF  # the nine candidate bits: bit d-1 for digit d
NEEDS_SEARCH = -1

ROWS = [[9 * r + c for c in range(9)] for r in range(9)]
COLS = [[9 * r + c for r in range(9)] for c in range(9)]
BOXES = [[9 * (3 * br + i) + 3 * bc + j for i in range(3) for j in range(3)] for br in range(3) for bc in range(3)]
UNITS = ROWS + COLS + BOXES
PEERS = [sorted({p for u in UNITS if i in u for p in u} - {i}) for i in range(81)]
BIT = {1 << d: d + 1 for d in range(9)}  # a single candidate bit -> its digit
POPCOUNT = [bin(m).count("1") for m in range(512)]


def _eliminate(c: list[int], queue: list[int]) -> bool:
    """Remove each queued single's digit from its peers (queueing peers that become singles); False on a
    contradiction (a cell with no candidate)."""
    while queue:
        i = queue.pop()
        m = c[i]
        for p in PEERS[i]:
            pm = c[p]
            if pm & m:
                pm &= ~m
                if not pm:
                    return False
                c[p] = pm
                if not pm & (pm - 1):
                    queue.append(p)
    return True


def _propagate(c: list[int]) -> bool:
    """Naked and hidden singles until nothing changes, in place; False on a contradiction."""
    if not _eliminate(c, [i for i in range(81) if not c[i] & (c[i] - 1)]):
        return False
    while True:
        queue = []
        for u in UNITS:
            once = twice = 0
            for i in u:
                m = c[i]
                twice |= once & m
                once |= m
            if once != ALL:
                return False  # a digit with no place in this unit
            only = once & ~twice
            if only:
                for i in u:
                    m = c[i] & only
                    if m and c[i] != m:
                        if m & (m - 1):
                            return False  # two digits that can only go in this one cell
                        c[i] = m
                        queue.append(i)
        if not queue:
            return True
        if not _eliminate(c, queue):
            return False


def _search(c: list[int], limit: int, out: list[list[int]], order: np.random.Generator | None) -> None:
    """Append up to `limit` solutions reachable from candidates c (propagated) to out; digits tried in a random
    order when a generator is given."""
    best, best_n = -1, 10
    for i in range(81):
        n = POPCOUNT[c[i]]
        if 1 < n < best_n:
            best, best_n = i, n
            if n == 2:
                break
    if best < 0:
        out.append([BIT[m] for m in c])
        return
    digits = [d for d in range(9) if c[best] >> d & 1]
    if order is not None:
        digits = [digits[k] for k in order.permutation(len(digits))]
    for d in digits:
        t = c.copy()
        t[best] = 1 << d
        if _eliminate(t, [best]) and _propagate(t):
            _search(t, limit, out, order)
            if len(out) >= limit:
                return


def candidates(grid) -> list[int] | None:
    """Candidate bitmasks of a grid (81 ints, 0 blank) after propagation; None if the givens contradict."""
    c = [ALL if v == 0 else 1 << (int(v) - 1) for v in grid]
    return c if _propagate(c) else None


def solutions(grid, limit: int = 2) -> list[list[int]]:
    """Up to `limit` solutions of a grid (81 values, 0 blank), each a list of 81 digits."""
    c = candidates(grid)
    out: list[list[int]] = []
    if c is not None:
        _search(c, limit, out, None)
    return out


def full_grid(rng: np.random.Generator) -> list[int]:
    """A complete valid grid: the three boxes on the diagonal (which share no row or column) filled with random
    permutations of 1-9, the rest by a randomised backtracking search (random digit order at every branch)."""
    grid = [0] * 81
    for b in (0, 4, 8):
        for i, d in zip(BOXES[b], rng.permutation(9), strict=True):
            grid[i] = int(d) + 1
    out: list[list[int]] = []
    c = candidates(grid)
    if c is not None:
        _search(c, 1, out, rng)
    if not out:  # cannot happen (every such start completes), checked rather than assumed
        raise TaskError("sudoku: internal error completing a grid")
    return out[0]


def _unique(grid: list[int]) -> bool:
    return len(solutions(grid, 2)) == 1


def make_puzzle(blanks: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(puzzle, solution), 81 values each, the puzzle with exactly `blanks` blank cells and a unique solution."""
    for _ in range(GRID_TRIES):
        sol = full_grid(rng)
        order = [int(i) for i in rng.permutation(81)]
        puzzle = sol.copy()
        for i in order[:blanks]:
            puzzle[i] = 0
        if _unique(puzzle):
            return puzzle, sol
        # ambiguous: the one-at-a-time blanking, putting back what breaks uniqueness, gives the same puzzle as
        # blanking the longest unique prefix of the order at once (found by bisection), then going on one at a time
        lo, hi = 0, blanks  # order[:lo] blanked is unique, order[:hi] is not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = sol.copy()
            for i in order[:mid]:
                trial[i] = 0
            lo, hi = (mid, hi) if _unique(trial) else (lo, mid)
        puzzle = sol.copy()
        for i in order[:lo]:
            puzzle[i] = 0
        removed = lo
        for i in order[lo + 1:]:  # order[lo] breaks uniqueness: it stays given
            puzzle[i] = 0
            if _unique(puzzle):
                removed += 1
                if removed == blanks:
                    return puzzle, sol
            else:
                puzzle[i] = sol[i]
    raise TaskError(f"sudoku: no puzzle with {blanks} blanks in {GRID_TRIES} grids; ask for fewer blanks")


def propagation_rounds(grid) -> int:
    """Rounds of simultaneous naked and hidden singles that fill the grid (81 values, 0 blank); NEEDS_SEARCH when a
    round fills nothing before the grid is full."""
    g = [int(v) for v in grid]
    rounds = 0
    while 0 in g:
        c = [0] * 81
        for i in range(81):
            if not g[i]:
                m = ALL
                for p in PEERS[i]:
                    if g[p]:
                        m &= ~(1 << (g[p] - 1))
                c[i] = m
        fill: dict[int, int] = {}
        for i in range(81):
            if not g[i] and c[i] and not c[i] & (c[i] - 1):
                fill[i] = BIT[c[i]]
        for u in UNITS:
            for d in range(9):  # a digit placed in the unit is no blank's candidate there: no places
                places = [i for i in u if not g[i] and c[i] >> d & 1]
                if len(places) == 1:
                    fill.setdefault(places[0], d + 1)
        if not fill:
            return NEEDS_SEARCH
        for i, v in fill.items():
            g[i] = v
        rounds += 1
    return rounds


def valid_grids(grids: np.ndarray) -> np.ndarray:
    """(n,) bool: every row, column and box of each full 9x9 grid (n, 9, 9) or (n, 81) holds 1..9 once."""
    g = np.asarray(grids).reshape(-1, 81)[:, np.array(UNITS)]  # (n, 27 units, 9 cells)
    return (np.sort(g, axis=2) == np.arange(1, 10)).all(axis=(1, 2))


def valid_solution(grid: np.ndarray) -> bool:
    """One full grid is valid (valid_grids for a single grid)."""
    return bool(valid_grids(np.asarray(grid).reshape(1, 81))[0])


class Sudoku:
    """inputs (n, 9, 9): 0 blank, 1-9 given; targets (n, 9, 9): the unique solution, 1-9, givens included.
    A model predicts one of 10 classes per cell (class d = digit d; class 0, "blank", is never a target)."""

    name = "sudoku"
    sizes = SizeRange(1, MAX_BLANKS)
    in_channels = 10  # one-hot of the cell's input value: blank or a given digit
    spatial_dims = 2
    classes = 10
    default_arch = "relational"
    train_size = 45
    dashboard_size = 45
    axis_label = ""
    size_label = "blank cells"  # what `size` counts, for axes and help
    size_ladder = (20, 30, 35, 40, 45, 48, 52, 55, 58)  # the sizes sweeps offer (blank counts, not a scale)
    shows_confidence = True  # render takes each cell's confidence: traces keep it for the shown problems
    legend = (("given", (60, 60, 60)), ("predicted, right", (30, 80, 200)), ("predicted, wrong", (230, 90, 0)))
    difficulty_names = ("propagation_rounds",)
    difficulty_help = ("propagation_rounds: the rounds of naked and hidden singles (each round fills every such cell "
                       "at once) that solve the puzzle; -1: propagation stops, the puzzle needs search")

    def input_shape(self, size: int) -> tuple[int, ...]:
        return (9, 9)

    def target_shape(self, size: int) -> tuple[int, ...]:
        return (9, 9)

    def size_of(self, inputs: np.ndarray) -> int:
        """The blank count; a file's puzzles all have the same one (check_arrays says so when they do not)."""
        inputs = np.asarray(inputs)
        return int((inputs.reshape(-1, 81)[0] == 0).sum()) if inputs.size else 0

    def generate(self, size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n puzzles with `size` blank cells each and a unique solution, from the seed (see the module's doc)."""
        size = self.sizes.check(self.name, size)
        n, seed = check_count(n), check_seed(seed)
        rng = np.random.default_rng([seed, size, 9])
        x = np.zeros((n, 9, 9), dtype=np.uint8)
        y = np.zeros((n, 9, 9), dtype=np.uint8)
        for m in range(n):
            puzzle, sol = make_puzzle(size, rng)
            x[m] = np.reshape(puzzle, (9, 9))
            y[m] = np.reshape(sol, (9, 9))
        return x, y

    def difficulty(self, inputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        return {"propagation_rounds": np.array([propagation_rounds(p.reshape(81)) for p in np.asarray(inputs)],
                                               dtype=np.int64)}

    def check_arrays(self, inputs: np.ndarray, targets: np.ndarray, size: int) -> None:
        """A file's puzzles: values in range, `size` blanks each, every target a valid grid that agrees with its
        givens. Raises a one-line TaskError naming the first bad puzzle."""
        x, y = np.asarray(inputs).reshape(-1, 81), np.asarray(targets).reshape(-1, 81)
        if x.size and x.max() > 9:
            raise TaskError(f"sudoku: inputs must hold 0 (blank) to 9, found {int(x.max())}")
        if y.size and (y.min() < 1 or y.max() > 9):
            raise TaskError(f"sudoku: targets must hold 1 to 9, found {int(y.min())}..{int(y.max())}")
        blanks = (x == 0).sum(axis=1)
        if (blanks != size).any():
            k = int(np.flatnonzero(blanks != size)[0])
            raise TaskError(f"sudoku: puzzle {k} has {int(blanks[k])} blank cells; the file's size says {size}")
        given = x > 0
        clash = (given & (x != y)).any(axis=1)
        if clash.any():
            raise TaskError(f"sudoku: puzzle {int(np.flatnonzero(clash)[0])}'s givens contradict its target")
        bad = ~valid_grids(y)
        if bad.any():
            raise TaskError(f"sudoku: target {int(np.flatnonzero(bad)[0])} is not a valid grid (a row, column or box "
                            f"repeats a digit)")

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 9, 9) values -> (B, 10, 9, 9) one-hot: channel 0 blank, channel d the given digit d."""
        return torch.nn.functional.one_hot(inputs.long(), 10).movedim(-1, 1).float()

    def cell_mask(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, 9, 9) bool: every cell (givens too: a model must keep them, and the whole grid is the answer)."""
        return torch.ones(encoded.shape[0], 9, 9, dtype=torch.bool, device=encoded.device)

    def render(self, inputs: np.ndarray, target: np.ndarray, pred: np.ndarray | None = None,
               confidence: np.ndarray | None = None) -> dict:
        """{'grid': 9x9 digits to show (the prediction where given, else the target), 'given': 9x9 bool, 'target',
        'prediction', 'wrong': 9x9 bool or None, 'confidence': 9x9 or None, 'correct': whole grid right or None}."""
        x, t = np.asarray(inputs).reshape(9, 9), np.asarray(target).reshape(9, 9)
        if x.shape != (9, 9):
            raise TaskError(f"sudoku: render expects a 9x9 grid, got {np.asarray(inputs).shape}")
        out = {"grid": (t if pred is None else np.asarray(pred).reshape(9, 9)).astype(int).tolist(),
               "given": (x > 0).tolist(), "target": t.astype(int).tolist(), "prediction": None, "wrong": None,
               "confidence": None if confidence is None else np.asarray(confidence, dtype=float).reshape(9, 9).tolist(),
               "correct": None}
        if pred is not None:
            p = np.asarray(pred).reshape(9, 9)
            out["prediction"] = p.astype(int).tolist()
            out["wrong"] = (p != t).tolist()
            out["correct"] = bool((p == t).all())
        return out
