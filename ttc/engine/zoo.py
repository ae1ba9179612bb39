"""Model-zoo bookkeeping: measure a checkpoint's accuracy table and write it into its card."""

from __future__ import annotations

from tasks import get_task
from ttc.engine.checkpoint import load_checkpoint, save_checkpoint
from ttc.engine.evaluate import accuracy_rows

TEST_SEED = 10**12  # test problems; training draws seeds below 1e12


def measure_table(ck, sizes: list[int], budgets: list[int], n: int = 200, seed: int = TEST_SEED, settings=None,
                  variant: str | None = None, device: str = "cpu", on_size=None, early_stop: bool = False,
                  batch: int = 100, precision: str | None = None, difficulty: int | None = None) -> list[dict]:
    """Rows of size x budget: accuracy at the budget, the best within it and where; for looped
    families also whether accuracy holds at 3x the best iteration (no overthinking)."""
    return accuracy_rows(ck.model, get_task(ck.task), sizes, budgets, n, seed, device=device, settings=settings,
                         variant=variant, on_size=on_size, early_stop=early_stop, batch=batch, precision=precision,
                         difficulty=difficulty)


def update_card(path: str, rows: list[dict], key: str = "accuracy_table") -> dict:
    """Merge measured rows into the checkpoint's card (replacing rows of the same size, budget and generator)."""
    ck = load_checkpoint(path)
    card = dict(ck.card)

    def ident(r: dict) -> tuple:
        return r["size"], r["iters"], r.get("generator"), r.get("difficulty"), r.get("precision") or "fp32"

    new = {ident(q) for q in rows}
    old = [r for r in card.get(key, []) if ident(r) not in new]
    card[key] = sorted(old + rows, key=lambda r: (r.get("generator") or "", r.get("difficulty") or -1,
                                                  r.get("precision") or "", r["size"], r["iters"]))
    save_checkpoint(path, ck.model, ck.task, card)
    return card


def write_analysis(path: str, result: dict, command: str) -> dict:
    """Put a compact analysis (`python -m ttc analyze --write`) into the checkpoint's card under "analysis", one
    entry per size (a later one at the same size replaces it): breadth accuracy against N starts, the verifier and
    its AUROC, the AA score and the fixed point against the best iterate."""
    ck = load_checkpoint(path)
    card = dict(ck.card)
    pi, fp, br = result["path_independence"], result["fixed_point_vs_iterate"], result["breadth"]
    entry = {"command": command, "size": result["size"], "n": result["n"], "iters": result["iters"],
             "starts": result["starts"], "seed": result["seed"], "aa_score": pi["aa_score"],
             "fixed_point_accuracy": fp["fixed_point_accuracy"], "best_iterate_accuracy": fp["best_iterate_accuracy"],
             "verifier": br["verifier"], "verifier_auroc": br["verifier_auroc"],
             "breadth": [{k: p[k] for k in ("starts", "nfe", "breadth_accuracy", "oracle_accuracy", "depth_accuracy")}
                         for p in br["points"]]}
    card["analysis"] = sorted([a for a in card.get("analysis", []) if a.get("size") != entry["size"]] + [entry],
                              key=lambda a: a["size"])
    save_checkpoint(path, ck.model, ck.task, card)
    return card
