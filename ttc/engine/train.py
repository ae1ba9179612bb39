"""The training loop: any task x family x arch, problems generated on the fly from the seed.

The loss is the family's own (`IterativeModel.training_loss`): recursive models train with the progressive
loss of Bansal et al. (2022), DEQs through their backward mode (implicit, jfb or unrolled, models.implicit).
The loop draws each step's problems, progressive split, initial state and generator from the seed, and keeps
the best validated weights. It prints nothing: progress goes to an `on_event` callback. Under `torchrun` it trains with
DistributedDataParallel (gloo on the CPU, nccl on CUDA) on the same code path.
"""

from __future__ import annotations

import contextlib
import copy
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models import ModelConfig, TrainStep, build_model, get_family
from models import precision as prec
from tasks import get_task, optional, tensors
from ttc.engine.averaging import WeightAverage
from ttc.engine.checkpoint import save_checkpoint
from ttc.engine.evaluate import Summary, accuracy_rows, evaluate
from ttc.engine.runtime import cpu_name, process_group


@dataclass
class TrainConfig:
    task: str = "prefix_sums"  # task to train on: prefix_sums, addition, mazes (or a plugin's)
    family: str = "recursive"  # model family: explicit, recursive, deq, ebm, memory (or a plugin's)
    arch: str = "conv1d"  # core: conv1d, transformer (strings), conv2d (mazes)
    width: int = 64  # latent channels
    depth: int = 2  # residual units per block
    layers: int = 20  # explicit: blocks; looped families: training iterations (a DEQ's max_iters)
    heads: int = 4  # transformer heads
    window: int = 0  # transformer: attention window (a position sees itself and window - 1 before it); 0: all
    norm: bool | None = None  # group norm in the block; default: the family's (on for DEQs only)
    bias: bool = True  # conv biases (False: bias-free, as the published maze recipe)
    slots: int = 8  # memory family: external memory slots
    sizes: list[int] = field(default_factory=lambda: [32])  # training sizes, one drawn per step
    batch: int = 64  # problems per optimiser step
    steps: int = 2000  # optimiser steps (the run also stops at time_budget seconds, if set)
    time_budget: float = 0.0  # seconds; 0 = no limit
    stop_after: int = 0  # end after this many steps with the schedule still planned for `steps` (0: run all)
    lr: float = 1e-3  # peak learning rate (AdamW)
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr * 0.02
    weight_decay: float = 1e-4
    clip: float = 1.0  # gradient-norm clip
    alpha: float = 0.5  # progressive-loss weight (recursive only); 0 = loss at full depth only
    prefix_max: int = 0  # progressive loss: n (iterations without gradient) drawn from [0, prefix_max); 0: layers
    seed: int = 0  # seeds the initialisation, the problems and every random draw of the run
    val_size: int = 0  # validation size (0: 2x the largest training size)
    val_iters: int = 0  # validation budget (0: 2x layers)
    val_every: int = 250  # validate (and keep the best weights) every this many steps
    val_n: int = 256  # validation problems
    eval_sizes: list[int] = field(default_factory=list)  # sizes of the card's accuracy table
    eval_iters: list[int] = field(default_factory=list)  # budgets of the card's accuracy table
    eval_n: int = 200  # test problems per row of the card's accuracy table
    eval_seed: int = 10**12  # seed of test problems, never used in training (those are seed*1e6 + step*64 + rank)
    threads: int = 0  # torch threads (0: leave as is)
    ema: float = 0.0  # validate and keep an exponential moving average of the weights with this decay (0: off)
    init_noise: float = 0.0  # std of a Gaussian initial state in training, for families using one (Anil et al. 2022)
    variants: str = ""  # comma-separated problem generators drawn per step (mazes: dfs,prim,...); "": the default
    masked_loss: bool = True  # count the loss only where the task's cell_mask allows (mazes: open cells)
    family_options: str = ""  # the family's own training options as a JSON object (its train_option_defaults)
    precision: str = "auto"  # compute precision: auto (bf16 where the device is fast at it), fp32, bf16
    init: str = ""  # warm start from this checkpoint's weights (same core; another family may add weights)
    # e.g. a DEQ from a recursive model of the same core, or a memory model from one (its memory keeps its seeded
    # initialisation); the start's card is kept under "init_card"

    def model_config(self) -> ModelConfig:
        task = get_task(self.task)
        norm = get_family(self.family).default_norm if self.norm is None else self.norm
        return ModelConfig(family=self.family, arch=self.arch, in_channels=task.in_channels, width=self.width,
                           depth=self.depth, layers=self.layers, heads=self.heads, norm=norm, classes=task.classes,
                           bias=self.bias, slots=self.slots, window=self.window)

    def training_settings(self, options: dict | None = None):
        """The run settings the family trains with, made from this config and its own options (`options`: those
        already read by family_option_values; a bad name or value raises)."""
        options = self.family_option_values() if options is None else options
        return get_family(self.family).settings_for_training({**asdict(self), **options})

    def family_option_values(self) -> dict:
        """The family's own options: its train_option_defaults updated by family_options (a JSON object); an unknown
        name or a value of another type than its default's is a ValueError naming it."""
        import json

        defaults = dict(get_family(self.family).train_option_defaults)
        if not self.family_options.strip():
            return defaults
        try:
            given = json.loads(self.family_options)
        except ValueError as e:
            raise ValueError(f"--family-options must be a JSON object, got {self.family_options[:60]!r}: {e}") from None
        if not isinstance(given, dict):
            raise ValueError(f"--family-options must be a JSON object, got {self.family_options[:60]!r}")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"--family-options: unknown {unknown} for family {self.family}; its options: "
                             f"{', '.join(sorted(defaults)) or 'none'}")
        ranges = get_family(self.family).train_option_ranges
        for k, v in given.items():
            d = defaults[k]
            ok = isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int) and not isinstance(v, bool))
            if not ok or isinstance(v, bool) != isinstance(d, bool):
                raise ValueError(f"--family-options: {k} takes a {type(d).__name__} like its default {d!r}, got {v!r}")
            if k in ranges:
                lo, hi, open_low = ranges[k]
                if not (math.isfinite(v) and lo <= v <= hi and (v > lo or not open_low)):
                    lo_, hi_ = (int(x) if float(x).is_integer() else x for x in (lo, hi))
                    rng = f"({lo_}, {hi_}]" if open_low else f"{lo_}..{hi_}"
                    raise ValueError(f"--{k.replace('_', '-')} must be in {rng}, got {v!r}")
        return {**defaults, **given}

    def validation_size(self) -> int:
        """val_size, else twice the largest training size, inside the task's range (odd where it takes odd sizes
        only: a maze trained at 7 validates at 15, not 14)."""
        if self.val_size:
            return self.val_size
        r = get_task(self.task).sizes
        v = min(2 * max(self.sizes), r.hi)
        return v + 1 if r.odd_only and v % 2 == 0 and v + 1 <= r.hi else (v - 1 if r.odd_only and v % 2 == 0 else v)

    def validation_budget(self) -> int:
        """val_iters, else twice the training iterations (a fixed-depth family: its depth)."""
        if self.val_iters:
            return self.val_iters
        return self.layers if get_family(self.family).fixed_depth else 2 * self.layers


class LossModule(nn.Module):
    """The per-step loss as a module, so DDP sees every forward that produces a gradient. The loss itself is
    the family's (`training_loss`): the progressive loss for recursive models, the backward mode for DEQs."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.mask_fn = optional(get_task(cfg.task), "cell_mask") if cfg.masked_loss else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, step: TrainStep) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask_fn(x) if self.mask_fn is not None else None
        step.extras["targets"] = y  # for losses that need the answer itself (an EBM's contrastive term)

        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            if mask is None:
                return F.cross_entropy(logits, y)
            per_cell = F.cross_entropy(logits, y, reduction="none")  # (B, *spatial)
            return (per_cell * mask).sum() / mask.sum().clamp(min=1)

        return self.model.training_loss(x, loss_fn, step)


def _lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def _batch(cfg: TrainConfig, step: int, rank: int, device: torch.device):
    task = get_task(cfg.task)
    rng = np.random.default_rng([cfg.seed, step, rank, 7])
    size = int(rng.choice(cfg.sizes))
    variants = [v for v in cfg.variants.split(",") if v]
    opts = {"variant": variants[int(rng.integers(len(variants)))]} if variants else {}
    x, y = task.generate(size, cfg.batch, seed=cfg.seed * 1_000_000 + step * 64 + rank, **opts)
    return tensors(task, x, y, device)


def _train_step(cfg: TrainConfig, step: int, rank: int, x: torch.Tensor, settings, options: dict) -> TrainStep:
    """The step's progressive split (same on every rank), initial state and generator, all from the seed; the
    family's own options (read once a run) as its extras."""
    rng = np.random.default_rng([cfg.seed, step, 11])
    n = int(rng.integers(0, cfg.prefix_max or cfg.layers))
    k = int(rng.integers(1, max(1, cfg.layers - n) + 1))  # a prefix past the training depth: one step with grad
    gen = torch.Generator(device=x.device).manual_seed(cfg.seed * 1_000_003 + step * 64 + rank)
    z0 = (cfg.init_noise * torch.randn((x.shape[0], cfg.width, *x.shape[2:]), generator=gen, device=x.device)
          if cfg.init_noise > 0 else None)
    return TrainStep(layers=cfg.layers, n=n, k=k, alpha=cfg.alpha, z0=z0, settings=settings,
                     generator=gen, extras=dict(options))


def validate(model, cfg: TrainConfig, size: int, iters: int, n: int, seed: int, device, settings=None) -> Summary:
    """The summary (best exact-match accuracy over the budget, where) on fresh problems."""
    task = get_task(cfg.task)
    x, y = task.generate(size, n, seed=seed)
    out = evaluate(model, task, x, y, iters, device=device, settings=settings,
                   precision=prec.resolve(cfg.precision, device)).summary()
    model.train()
    return out


def accuracy_table(model, cfg: TrainConfig, device, settings=None) -> list[dict]:
    """The card's table (see engine.evaluate.accuracy_rows) on eval_n problems from eval_seed."""
    rows = accuracy_rows(model, get_task(cfg.task), cfg.eval_sizes, cfg.eval_iters or [cfg.layers], cfg.eval_n,
                         cfg.eval_seed, device=device, settings=settings,
                         precision=prec.resolve(cfg.precision, device))
    model.train()
    return rows


def interrupted_path(out: str | Path) -> Path:
    """Where an interrupted run's weights go: beside `out`, under a name that says so."""
    out = Path(out)
    return out.with_name(out.stem + ".interrupted.safetensors")


def check_out(out: str | Path | None, force: bool) -> None:
    """Refuse to train over an existing checkpoint (a shipped one above all) unless asked to."""
    p = None if out is None else Path(out).with_suffix(".safetensors")
    if p is not None and p.exists() and not force:
        raise FileExistsError(f"{p} exists; training never overwrites a checkpoint unless asked: pass --force to "
                              f"replace it, or --out a new path")


def _warm_start(cfg: TrainConfig, mcfg, model) -> dict | None:
    """With --init: the start checkpoint's weights loaded into `model` (refused unless they fit), and what its card
    says about it; else None."""
    if not cfg.init:
        return None
    from ttc.engine.checkpoint import load_checkpoint

    start = load_checkpoint(cfg.init)
    # the same core; the training iteration count (layers) may differ: a looped family's weights do not depend
    # on it, and an explicit one's do (its weights then do not fit, below)
    same = {**start.config.to_dict(), "family": mcfg.family, "layers": mcfg.layers} == mcfg.to_dict()
    theirs, ours = start.model.state_dict(), model.state_dict()
    # every weight of the start must fit; weights only the new family has (a memory model's memory from a
    # recursive core) keep their seeded initialisation
    fits = set(theirs) <= set(ours) and all(theirs[k].shape == ours[k].shape for k in theirs)
    if not same or not fits or start.task != cfg.task:
        raise ValueError(f"--init checkpoint {cfg.init} has task/config {start.task}/{start.config.to_dict()}, "
                         f"this run needs {cfg.task}/{mcfg.to_dict()} (another family only with the same "
                         f"weights or more: a DEQ or a memory model from a recursive model of the same core)")
    model.load_state_dict({**ours, **theirs})
    init_card = {**start.card, "new_weights": sorted(set(ours) - set(theirs))}
    return init_card


def _card(cfg: TrainConfig, command: str, done: int, interrupted: bool, first_loss, wall: float,
          device: torch.device, world: int, precision: str, best_val: dict, history: list[dict],
          init_card: dict | None) -> dict:
    """The model card of a training run (before its accuracy table)."""
    card = {
        "command": command,
        "train_config": asdict(cfg),
        "seed": cfg.seed,
        "train_sizes": list(cfg.sizes),
        "steps_run": done,
        "interrupted": interrupted,
        "first_loss": first_loss,
        "train_seconds": round(wall, 1),
        "machine": f"{cpu_name()} ({platform.machine()}; bf16 units: {prec.cpu_bf16_units() or 'none'}), "
                   f"{torch.get_num_threads()} threads, "
                   f"{'cuda ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}",
        "world_size": world,
        "torch": torch.__version__,
        "precision": precision,
        "family_options": cfg.family_option_values(),
        "best_val": best_val,
        "history": history,
    }
    if init_card is not None:
        keep = ("command", "family", "steps_run", "train_seconds", "best_val", "init_card", "new_weights")
        card["init_card"] = {k: init_card.get(k) for k in keep}
    return card


def train(cfg: TrainConfig, out: str | None = None, on_event: Callable[[dict], None] | None = None,
          command: str = "", force: bool = False) -> dict:
    """Train, keep the best validated weights, write the checkpoint and card; return the card.

    An existing `out` is refused before any work unless `force`. The checkpoint is written to a temporary file
    and renamed into place, so `out` is either the old file or the whole new one. An interrupted run (Ctrl-C)
    never writes `out`: its weights go beside it (`interrupted_path`), its card saying `interrupted: true`.
    Denormal floats are flushed to zero while it trains (denormal weights and moments late in training slow the
    CPU's kernels many-fold) and not after: the setting is the whole process's (it once made a later test's
    float strategy refuse to run)."""
    check_out(out, force)
    cfg.family_option_values()  # refuses unknown or ill-typed options before any work
    torch.set_flush_denormal(True)
    try:
        return _train(cfg, out, on_event, command)
    finally:
        torch.set_flush_denormal(False)


def _train(cfg: TrainConfig, out: str | None, on_event: Callable[[dict], None] | None, command: str) -> dict:
    emit = on_event or (lambda ev: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world, rank, device = process_group()
    mcfg = cfg.model_config()
    model = build_model(mcfg, seed=cfg.seed).to(device)
    channels_last = get_task(cfg.task).spatial_dims == 2 and prec.CHANNELS_LAST
    if channels_last:  # 2-D convolutions channels-last, before the optimizer sees the weights
        model = model.to(memory_format=torch.channels_last)
    precision = prec.resolve(cfg.precision, device)  # bf16 autocast in the cores; weights and optimizer stay fp32
    options = cfg.family_option_values()
    settings = cfg.training_settings(options)
    init_card = _warm_start(cfg, mcfg, model)
    model.train()
    step_mod = LossModule(model, cfg)
    if world > 1:
        step_mod = nn.parallel.DistributedDataParallel(step_mod)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_size, val_iters = cfg.validation_size(), cfg.validation_budget()
    best = {"acc": -1.0, "iter": 0, "step": 0, "state": copy.deepcopy(model.state_dict())}
    history: list[dict] = []
    avg = WeightAverage(model, cfg.ema) if cfg.ema else None  # with --ema the average is validated and kept

    def validate_and_keep(step_done: int, loss_value: float) -> None:
        nonlocal best
        with avg.applied(model) if avg else contextlib.nullcontext():  # the weights validated are the ones kept
            v = validate(model, cfg, val_size, val_iters, cfg.val_n, seed=cfg.eval_seed + 1, device=device,
                         settings=settings)
            if v.best_accuracy >= best["acc"]:
                best = {"acc": v.best_accuracy, "iter": v.best_iter, "step": step_done,
                        "state": copy.deepcopy(model.state_dict())}
        history.append({"step": step_done, "loss": loss_value, "val_acc": v.best_accuracy, "val_iter": v.best_iter})
        emit({"event": "val", "step": step_done, "val_size": val_size, "val_acc": v.best_accuracy,
              "val_iter": v.best_iter})

    mask_fn = optional(get_task(cfg.task), "cell_mask")
    t0 = time.perf_counter()
    seen, step, done, interrupted, first_loss, lv = 0, 0, 0, False, None, math.nan
    try:
        for step in range(cfg.steps):
            if cfg.time_budget and time.perf_counter() - t0 > cfg.time_budget:
                break
            if cfg.stop_after and step >= cfg.stop_after:
                break
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg, cfg.steps)
            x, y = _batch(cfg, step, rank, device)
            if channels_last:  # the weights were converted once, above; the batch each step
                x = x.contiguous(memory_format=torch.channels_last)
            with prec.use(precision):
                loss, logits = step_mod(x, y, _train_step(cfg, step, rank, x, settings, options))
                opt.zero_grad(set_to_none=True)
                loss.backward()
            gn = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.clip))
            opt.step()
            if avg:
                avg.update(model)
            done = step + 1
            seen += x.shape[0] * world
            lv = float(loss.detach())
            first_loss = lv if first_loss is None else first_loss
            pred = logits.argmax(1)
            if mask_fn is not None:
                pred = pred * mask_fn(x)
            acc = float((pred == y).flatten(1).all(1).float().mean())
            ev = {"event": "step", "step": step + 1, "steps": cfg.steps, "loss": lv, "acc": acc, "grad_norm": gn,
                  "lr": opt.param_groups[0]["lr"], "elapsed": time.perf_counter() - t0,
                  "samples_per_s": seen / max(1e-9, time.perf_counter() - t0)}
            emit(ev)
            last = step + 1 == cfg.steps or step + 1 == cfg.stop_after
            if (step + 1) % cfg.val_every == 0 or last:
                validate_and_keep(step + 1, lv)
    except KeyboardInterrupt:
        interrupted = True
        emit({"event": "interrupted", "step": step})
    if not interrupted and done and (not history or history[-1]["step"] != done):
        validate_and_keep(done, lv)  # stopped by the time budget or stop_after between validations
    wall = time.perf_counter() - t0
    if best["acc"] < 0 or interrupted and best["step"] == 0:
        best["state"] = copy.deepcopy(model.state_dict())
    model.load_state_dict(best["state"])
    model.eval()
    card = _card(cfg, command, done, interrupted, first_loss, wall, device, world, precision,
                 {"size": val_size, "iters": val_iters, "accuracy": best["acc"], "best_iter": best["iter"],
                  "step": best["step"], "n": cfg.val_n}, history, init_card)
    if rank == 0:
        if cfg.eval_sizes and not interrupted:
            emit({"event": "eval_table"})
            card["accuracy_table"] = accuracy_table(model, cfg, device, settings=settings)
        if out:
            target = interrupted_path(out) if interrupted else out
            save_checkpoint(target, model, cfg.task, card)
            emit({"event": "saved", "path": str(target)})
    if world > 1:
        torch.distributed.barrier()
    return card
