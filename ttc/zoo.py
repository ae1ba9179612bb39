"""Model-zoo bookkeeping: measure a checkpoint's accuracy table and write it into its card."""

from __future__ import annotations

import time

import numpy as np

from tasks import get_task

from .checkpoint import load_checkpoint, save_checkpoint
from .probe import probe

TEST_SEED = 10**12  # test problems; training draws seeds below 1e12


def accuracy_curve(ck, size: int, budget: int, n: int, seed: int, batch: int = 100, **solver_opts) -> np.ndarray:
    """Exact-match accuracy after each iteration 1..budget (explicit: each layer) on n fresh problems."""
    task = get_task(ck.task)
    x, y = task.generate(size, n, seed)
    total = None
    for s in range(0, n, batch):
        accs = np.array([r.accuracy for r in probe(ck.model, task, x[s:s + batch], y[s:s + batch], budget,
                                                    **solver_opts)])
        part = accs * len(x[s:s + batch])
        total = part if total is None else total + part
    return total / n


def measure_table(ck, sizes: list[int], budgets: list[int], n: int = 200, seed: int = TEST_SEED,
                  **solver_opts) -> list[dict]:
    """Rows of size x budget: accuracy at the budget, the best within it and where; for looped
    families also whether accuracy holds at 3x the best iteration (no overthinking)."""
    rows = []
    for size in sizes:
        t0 = time.perf_counter()
        curve = accuracy_curve(ck, size, max(budgets), n, seed, **solver_opts)
        secs = time.perf_counter() - t0
        for b in budgets if ck.family != "explicit" else [len(curve)]:
            upto = curve[: min(b, len(curve))]
            best = int(np.argmax(upto))
            row = {"size": size, "iters": b if ck.family != "explicit" else len(curve), "accuracy": float(upto[-1]),
                   "best_accuracy": float(upto[best]), "best_iter": best + 1, "n": n, "seed": seed,
                   "seconds": round(secs, 1)}
            if 3 * (best + 1) <= len(curve) and ck.family != "explicit":
                row["accuracy_at_3x_best"] = float(curve[3 * (best + 1) - 1])
            rows.append(row)
    return rows


def update_card(path: str, rows: list[dict], key: str = "accuracy_table") -> dict:
    """Merge measured rows into the checkpoint's card (replacing rows of the same size and budget)."""
    ck = load_checkpoint(path)
    card = dict(ck.card)
    old = [r for r in card.get(key, []) if not any(r["size"] == q["size"] and r["iters"] == q["iters"] for q in rows)]
    card[key] = sorted(old + rows, key=lambda r: (r["size"], r["iters"]))
    save_checkpoint(path, ck.model, ck.task, card)
    return card
