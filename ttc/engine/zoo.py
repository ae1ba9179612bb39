"""Model-zoo bookkeeping: measure a checkpoint's accuracy table and write it into its card; load a folder's
checkpoints, the sizes they are measured at, the DEQs the bench and the report measure memory on, and what machine
a measurement ran on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from models import IterativeModel, ModelConfig, build_model, families
from tasks import get_task
from ttc.engine import runtime
from ttc.engine.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
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


# the zoo's prefix-sums DEQ shape, for a stand-in of the first family with a solver
RANDOM_DEQ = {"task": "prefix_sums", "arch": "conv1d", "width": 64, "depth": 2, "layers": 30, "norm": True}



def training_size(ck: Checkpoint) -> int:
    """The largest size the checkpoint trained on (its card), else the zoo's default for the task."""
    return max(ck.train_sizes, default=get_task(ck.task).train_size)



def scaled_size(task: str, size: int, factor: float) -> int:
    """size x factor, clamped into the task's range (odd for mazes)."""
    r = get_task(task).sizes
    v = min(max(int(round(size * factor)), r.lo), r.hi)
    if r.odd_only and v % 2 == 0:
        v = v + 1 if v + 1 <= r.hi else v - 1
    return v



def machine(dev: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = runtime.cpu_name()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
           "device": dev.type, "load_average": load, "allocator": runtime.allocator}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out



@dataclass
class DEQCase:
    """A DEQ to benchmark: a checkpoint's model, or a random one standing in when the folder has none."""

    name: str
    model: IterativeModel
    task: str
    size: int
    random: bool = False



def load_zoo(folder: str | Path) -> tuple[list[Checkpoint], list[str]]:
    """The folder's valid checkpoints and a note per file that failed validation."""
    cks, notes = [], []
    for p in list_checkpoints(folder):
        try:
            cks.append(load_checkpoint(p))
        except (CheckpointError, ValueError, OSError) as e:
            notes.append(f"{p.name} skipped: {e}")
    return cks, notes



def deq_cases(cks: list[Checkpoint], uses: str = "the DEQ measurements (solvers, torchdeq, memory) use"
              ) -> tuple[list[DEQCase], list[str]]:
    cases = [DEQCase(ck.name, ck.model, ck.task, training_size(ck)) for ck in cks if ck.model.has_solver]
    if cases:
        return cases, []
    spec = dict(RANDOM_DEQ)
    spec["family"] = next(f.family_name for f in families() if f.has_solver)
    task = get_task(spec.pop("task"))
    model = build_model(ModelConfig(in_channels=task.in_channels, **spec), seed=0)
    name = "random-prefix_sums-deq"
    note = (f"no DEQ checkpoint: {uses} {name}, a randomly "
            f"initialised DEQ of the zoo's prefix-sums shape (conv1d, width 64, depth 2, group norm, seed 0); "
            f"untrained, it is not contractive, so few samples reach the tolerance")
    return [DEQCase(name, model, task.name, task.train_size, random=True)], [note]

