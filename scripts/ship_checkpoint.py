"""Copy a trained checkpoint into the zoo with its card finished: the stages' times summed into train_seconds (a
warm start's card is kept under init_card) and a note. Refuses to overwrite a shipped checkpoint without --force.

    python scripts/ship_checkpoint.py runs/sudoku/recursive-final.safetensors sudoku-recursive --note "..."
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ttc.engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def stages_seconds(card: dict) -> float:
    """This run's seconds plus those of every warm start before it (init_card, recursively)."""
    own = float(card.get("stage_seconds", card.get("train_seconds", 0.0)) or 0.0)
    init = card.get("init_card")
    return own + (stages_seconds(init) if isinstance(init, dict) else 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src")
    p.add_argument("name", help="zoo name, e.g. sudoku-recursive")
    p.add_argument("--note", default="")
    p.add_argument("--force", action="store_true")
    a = p.parse_args()
    dst = Path("checkpoints") / f"{a.name}.safetensors"
    if dst.exists() and not a.force:
        sys.exit(f"error: {dst} exists; pass --force to replace it")
    ck = load_checkpoint(a.src)
    card = dict(ck.card)
    card["stage_seconds"] = float(card.get("train_seconds", 0.0))
    card["train_seconds"] = round(stages_seconds(card), 1)
    if a.note:
        card["note"] = a.note
    save_checkpoint(dst, ck.model, ck.task, card)
    print(f"{dst}: {card['train_seconds'] / 60:.1f} min over all stages")
    # a new model's card has no precision table yet: until it has one, `auto` runs it in bf16 wherever bf16 is fast
    print(f"next: python -m ttc measure --checkpoint {dst} ... --write (its accuracy rows), then python "
          f"scripts/precision_table.py --only {a.name} --write-cards (its rows in both precisions and precision_auto)")


if __name__ == "__main__":
    main()
