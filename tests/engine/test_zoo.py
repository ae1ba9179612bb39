"""The shipped model zoo: every checkpoint loads, has a complete card, and reproduces its card's
accuracy on the card's own test problems at the cheapest size it records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttc.engine.checkpoint import load_checkpoint
from ttc.engine.zoo import measure_table

CKPTS = sorted(Path("checkpoints").glob("*.safetensors"))
EXPECTED = {
    "prefix_sums-recursive", "prefix_sums-deq", "prefix_sums-explicit", "addition-recursive", "addition-deq",
    "addition-explicit", "mazes-recursive", "mazes-deq", "mazes-explicit", "prefix_sums-recursive-transformer",
    "prefix_sums-explicit-transformer", "prefix_sums-memory", "addition-memory", "prefix_sums-ebm", "addition-ebm",
    "mazes-ebm", "addition-recursive-transformer", "prefix_sums-deq-transformer",
    "sudoku-recursive", "sudoku-deq", "sudoku-ebm", "sudoku-explicit",
}


def test_zoo_holds_only_known_names_and_small_files():
    assert CKPTS, "no checkpoints shipped"
    for p in CKPTS:
        assert p.stem in EXPECTED, p.stem
        assert p.stat().st_size < 4 * 1024 * 1024, (p, p.stat().st_size)


@pytest.mark.parametrize("path", CKPTS, ids=[p.stem for p in CKPTS])
def test_checkpoint_card_is_complete_and_matches_the_json(path):
    ck = load_checkpoint(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card == ck.card
    assert path.stem.startswith(f"{ck.task}-{ck.family}")
    for key in ("command", "seed", "train_sizes", "steps_run", "train_seconds", "machine", "params",
                "accuracy_table"):
        assert key in card, key
    assert card["params"] == ck.model.num_params()
    assert card["accuracy_table"], "card records no measured accuracy"


@pytest.mark.parametrize("path", CKPTS, ids=[p.stem for p in CKPTS])
def test_checkpoint_reproduces_its_card_accuracy_at_the_cheapest_recorded_size(path):
    ck = load_checkpoint(path)
    rows = ck.card["accuracy_table"]
    row = min(rows, key=lambda r: (r["size"], r["iters"]))
    n = min(row["n"], 100)  # the first 100 of the card's problems: same seed, same problems
    got = measure_table(ck, [row["size"]], [row["iters"]], n=n, seed=row["seed"],
                        precision=row.get("precision", "fp32"))[0]  # rows measured before precision existed: fp32
    margin = 0.03 if n == row["n"] else 0.08
    assert abs(got["best_accuracy"] - row["best_accuracy"]) <= margin, (got, row)
