"""Tiny random checkpoints for the dashboard tests: one per family on prefix_sums, one maze and one sudoku model.

They are untrained (accuracies near zero) but valid, small and fast: what the app must handle is
whatever the folder holds.
"""

from __future__ import annotations

from pathlib import Path

from models import ModelConfig, build_model
from ttc.engine.checkpoint import save_checkpoint

TINY = {
    "prefix_sums-recursive": dict(family="recursive", arch="conv1d", in_channels=1, width=8, depth=1, layers=6),
    "prefix_sums-explicit": dict(family="explicit", arch="conv1d", in_channels=1, width=8, depth=1, layers=5),
    "prefix_sums-deq": dict(family="deq", arch="conv1d", in_channels=1, width=8, depth=1, layers=6, norm=True),
    "prefix_sums-ebm": dict(family="ebm", arch="conv1d", in_channels=1, width=8, depth=1, layers=6),
    "mazes-recursive": dict(family="recursive", arch="conv2d", in_channels=3, width=8, depth=1, layers=6),
    "sudoku-recursive": dict(family="recursive", arch="relational", in_channels=10, width=8, depth=1, layers=6,
                             classes=10),
}


def make_checkpoints(folder: str | Path, names: tuple[str, ...] = tuple(TINY)) -> list[Path]:
    folder = Path(folder)
    out = []
    for i, name in enumerate(names):
        cfg = ModelConfig(**TINY[name])
        model = build_model(cfg, seed=i)
        task = name.split("-")[0]
        card = {"train_sizes": [8, 12], "train_seconds": 1.5, "best_val": {"size": 16, "iters": 12, "accuracy": 0.0}}
        out.append(save_checkpoint(folder / f"{name}.safetensors", model, task, card))
    return out
