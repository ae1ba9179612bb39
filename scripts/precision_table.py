"""Every zoo row in both precisions on the same problems: accuracy fp32, accuracy bf16, the speed ratio.

    python scripts/precision_table.py --threads 2 --out docs/precision/zoo.json      # the README's table
    python scripts/precision_table.py --only prefix_sums-recursive --n 50            # one checkpoint, quickly
    python scripts/precision_table.py --only mazes-recursive --max-size 33 --max-iters 400 --write-cards

Per checkpoint: its training size and the largest size on its card, n fresh problems (the zoo's test seed), the
card's largest budget (at most --max-iters); fp32 and bf16 run one after the other on the same problems and the
same model. With --write-cards each card gets the rows (precision_table) and "precision_auto": fp32 where bf16 loses
more than 1 point on a row or is not 1.1x faster on the largest row, else bf16; `auto` follows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import get_task  # noqa: E402
from ttc.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint  # noqa: E402
from ttc.engine.evaluate import evaluate  # noqa: E402
from ttc.engine.runtime import set_threads, tune_allocator  # noqa: E402
from ttc.engine.zoo import TEST_SEED  # noqa: E402

LOSS_POINTS = 1.0  # more than this many points lost in bf16: the card asks auto for fp32
MIN_SPEEDUP = 1.1  # bf16 not this much faster on the card's largest row: auto runs fp32 (no gain, more rounding)


def auto_choice(entries: list[dict], n: int) -> dict:
    """The card's precision_auto and why: fp32 where bf16 loses more than LOSS_POINTS on a row, or is not
    MIN_SPEEDUP faster on the largest row (where the time is); bf16 otherwise."""
    worst = max(r["loss_points"] for r in entries)
    speed = max(entries, key=lambda r: (r["size"], r["iters"]))["speed_ratio"]
    if worst > LOSS_POINTS:
        why = f"bf16 loses {worst:g} points on a row of precision_table (n = {n})"
        choice = "fp32"
    elif speed < MIN_SPEEDUP:
        why = f"bf16 is only {speed:.2f}x as fast on its largest row (at most {worst:g} points lost)"
        choice = "fp32"
    else:
        why = f"bf16 is {speed:.2f}x as fast on its largest row and loses at most {worst:g} points (n = {n})"
        choice = "bf16"
    return {"precision_auto": choice, "precision_note": f"{why}: auto runs it in {choice}"}


def rows_for(ck, n: int, max_iters: int, max_size: int = 0) -> list[tuple[int, int]]:
    table = ck.card.get("accuracy_table") or []
    sizes = sorted({int(r["size"]) for r in table
                    if not r.get("generator") and (not max_size or int(r["size"]) <= max_size)})
    task = get_task(ck.task)
    train = max(ck.train_sizes, default=task.train_size)
    picks = sorted({train, *(sizes[-1:] if sizes else [])})
    budget = max([int(r["iters"]) for r in table] or [ck.config.layers * 2])
    return [(s, min(budget, max_iters)) for s in picks]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", default="checkpoints")
    p.add_argument("--only", default="", help="comma-separated checkpoint names")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--max-iters", type=int, default=800)
    p.add_argument("--max-size", type=int, default=0,
                   help="the largest row: the card's largest size up to this one (0: the card's largest)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    p.add_argument("--write-cards", action="store_true",
                   help="record the measured rows on each card under precision_table, and precision_auto: fp32 "
                        "where bf16 loses more than 1 point")
    a = p.parse_args()
    set_threads(a.threads)
    tune_allocator()
    only = {s for s in a.only.split(",") if s}
    out = []
    for path in list_checkpoints(a.folder):
        if only and path.stem not in only:
            continue
        ck = load_checkpoint(path)
        task = get_task(ck.task)
        entries = []
        for size, iters in rows_for(ck, a.n, a.max_iters, a.max_size):
            x, y = task.generate(size, a.n, TEST_SEED)
            res = {}
            for prec in ("fp32", "bf16"):
                t0 = time.perf_counter()
                c = evaluate(ck.model, task, x, y, iters, precision=prec, batch=100,
                             settings=ck.model.settings_from_card(ck.card))
                res[prec] = {"best": c.summary().best_accuracy, "best_iter": c.summary().best_iter,
                             "final": c.accuracy[-1], "seconds": round(time.perf_counter() - t0, 2)}
            row = {"checkpoint": path.stem, "size": size, "iters": iters, "n": a.n, **res,
                   "speed_ratio": round(res["fp32"]["seconds"] / max(1e-9, res["bf16"]["seconds"]), 2),
                   "loss_points": round(100 * (res["fp32"]["best"] - res["bf16"]["best"]), 1)}
            entries.append(row)
            print(json.dumps(row), flush=True)
        out += entries
        if a.write_cards and entries:
            card = dict(ck.card)
            card["precision_table"] = [{k: r[k] for k in ("size", "iters", "n", "fp32", "bf16", "speed_ratio",
                                                          "loss_points")} for r in entries]
            card.update(auto_choice(entries, a.n))
            save_checkpoint(path, ck.model, ck.task, card)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("| checkpoint | size | iters | n | best fp32 | best bf16 | final fp32 | final bf16 | fp32 s | bf16 s | "
          "speed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in out:
        print(f"| {r['checkpoint']} | {r['size']} | {r['iters']} | {r['n']} | {r['fp32']['best']:.1%} | "
              f"{r['bf16']['best']:.1%} | {r['fp32']['final']:.1%} | {r['bf16']['final']:.1%} | "
              f"{r['fp32']['seconds']:.1f} | {r['bf16']['seconds']:.1f} | {r['speed_ratio']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
