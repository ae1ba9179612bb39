"""The bench's `precision` group: bfloat16 against float32, and both against the layout the project had before.

Three ways to run the same model on the same problems, timed in turns in one process:
- `before`: float32 with convolutions in (B, C, L) / (B, C, H, W) order, what every run did before the fast path;
- `fp32`: float32, convolutions channels-last (1-D ones as 1 x L 2-D ones);
- `bf16`: the cores under bfloat16 autocast, channels-last; states, residuals and solvers float32.
Entries, per checkpoint: the Explore page's default run (instrumented, probe) and one large run (a bare loop over
model.stream at 16x the training length, 4x the side for grids) with its achieved GFLOP/s (counted by
torch.utils.flop_counter) as a fraction of the same process's matmul figure at that precision; per task, optimizer
steps per second of one training step (forward, backward, AdamW) of the task's looped checkpoint.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable

import torch

from models import precision as prec
from tasks import get_task, tensors
from ttc.engine.checkpoint import Checkpoint
from ttc.engine.probe import probe
from ttc.engine.zoo import scaled_size, training_size
from ttc.tools.bench.common import SEED, BenchConfig, _batch, _timed, entry, spread

MODES = ("before", "fp32", "bf16")


def _in_mode(mode: str, model: torch.nn.Module, fn: Callable[[], object]) -> Callable[[], object]:
    """fn run in one of MODES (the model is this mode's own copy, already in its layout)."""
    def run() -> object:
        old = prec.CHANNELS_LAST
        prec.CHANNELS_LAST = mode != "before"
        try:
            with prec.use("bf16" if mode == "bf16" else "fp32"):
                return fn()
        finally:
            prec.CHANNELS_LAST = old
    return run


def _copies(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """One copy of the model per mode: `before` in the old (contiguous) layout, the others channels-last."""
    out = {}
    for mode in MODES:
        m = copy.deepcopy(model).eval()
        fmt = torch.contiguous_format if mode == "before" else torch.channels_last
        if any(p.dim() == 4 for p in m.parameters()):
            m = m.to(memory_format=fmt)
        out[mode] = m
    return out


def _rounds(fns: dict[str, Callable[[], object]], repeats: int, dev: torch.device) -> dict[str, list[float]]:
    """Seconds of each function, timed in turns (the order rotated every round, one warm-up each)."""
    for f in fns.values():
        f()
    names = list(fns)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            out[k].append(_timed(fns[k], dev)[0])
    return out


def matmul_figure(dev: torch.device, quick: bool) -> dict[str, float]:
    """GFLOP/s of an n x n matmul in float32 and in bfloat16 on this process's threads (median of repeats)."""
    n = 1024 if quick else 2048
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gen = torch.Generator().manual_seed(SEED)
        a = torch.randn(n, n, generator=gen).to(dev, dtype)
        b = torch.randn(n, n, generator=gen).to(dev, dtype)
        a @ b
        times = [_timed(lambda a=a, b=b: a @ b, dev)[0] for _ in range(3 if quick else 7)]
        out[name] = 2 * n ** 3 / statistics.median(times) / 1e9
    return out


def _counted_flops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call of fn (forward and any backward it runs), counted by
    torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def _flops(model, x: torch.Tensor, iters: int, settings) -> float:
    """Floating-point operations of the timed loop itself (iters iterations of model.stream on x; an explicit model
    streams its whole depth)."""
    def loop() -> None:
        with torch.inference_mode(not model.needs_grad):
            for _ in model.stream(x, iters, settings=settings):
                pass
    return _counted_flops(loop)


def bench_precision_runs(ck: Checkpoint, cfg: BenchConfig, dev: torch.device, figure: dict[str, float]
                         ) -> list[dict]:
    """Per checkpoint: the Explore default run (probe) and a large bare run, in each of MODES."""
    task = get_task(ck.task)
    settings = ck.model.settings.run_to_budget()
    models = _copies(ck.model.to(dev))
    n = 16 if cfg.quick else 100
    iters = cfg.dashboard_budget
    repeats = 3 if cfg.quick else 5
    _, xs, ys, *_ = _batch(ck.task, task.dashboard_size, n, SEED, dev)

    def explore(mode: str) -> Callable[[], object]:
        p = "bf16" if mode == "bf16" else "fp32"
        return _in_mode(mode, models[mode], lambda: sum(1 for _ in probe(models[mode], task, xs, ys, iters,
                                                                         device=dev, settings=settings,
                                                                         precision=p)))

    t = _rounds({m: explore(m) for m in MODES}, repeats, dev)
    setup = {"checkpoint": ck.name, "family": ck.family, "arch": ck.arch, "task": ck.task,
             "size": task.dashboard_size, "n": n, "iters": iters, "device": dev.type}
    out = [entry("precision", f"Explore default run, bf16 vs before: {ck.name}",
                 "seconds of the Explore default run (probe) in float32 as it ran before (no channels-last) / in "
                 "bf16", [a / b for a, b in zip(t["before"], t["bf16"], strict=True)], timed=True,
                 seconds={m: spread(v) for m, v in t.items()},
                 bf16_vs_fp32=spread([a / b for a, b in zip(t["fp32"], t["bf16"], strict=True)]), setup=setup)]

    # the large run: a bare loop over model.stream, its GFLOP/s against the matmul figure
    base = training_size(ck)
    big = scaled_size(ck.task, base, 16 ** (1 / task.spatial_dims) if not cfg.quick else 2)
    n_big = 16 if cfg.quick else 50
    k = 4 if cfg.quick else 10
    _, _, _, x, _ = _batch(ck.task, big, n_big, SEED + 1, dev)
    xcl = prec.layout(models["fp32"], x)[1]
    inputs = {"before": x, "fp32": xcl, "bf16": xcl}

    def bare(mode: str) -> Callable[[], object]:
        def loop() -> None:
            with torch.inference_mode(not models[mode].needs_grad):
                for _ in models[mode].stream(inputs[mode], k, settings=settings):
                    pass
        return _in_mode(mode, models[mode], loop)

    tb = _rounds({m: bare(m) for m in MODES}, repeats, dev)
    flops = {m: _in_mode(m, models[m], lambda m=m: _flops(models[m], inputs[m], k, settings))()
             for m in ("fp32", "bf16")}
    gflops = {m: flops[m] / statistics.median(tb[m]) / 1e9 for m in ("fp32", "bf16")}
    out.append(entry("precision", f"large run, bf16 vs before: {ck.name}",
                     f"seconds of {k} iterations of model.stream on {n_big} problems of size {big}, float32 as before "
                     f"/ bf16", [a / b for a, b in zip(tb["before"], tb["bf16"], strict=True)], timed=True,
                     seconds={m: spread(v) for m, v in tb.items()},
                     bf16_vs_fp32=spread([a / b for a, b in zip(tb["fp32"], tb["bf16"], strict=True)]),
                     gflops={m: round(v, 1) for m, v in gflops.items()},
                     fraction_of_matmul={m: round(gflops[m] / figure[m], 3) for m in ("fp32", "bf16")},
                     bf16_fraction_of_fp32_matmul=round(gflops["bf16"] / figure["fp32"], 3),
                     setup={**setup, "size": big, "n": n_big, "iters": k, "runner": "bare model.stream"}))
    return out


def bench_precision_training(ck: Checkpoint, cfg: BenchConfig, dev: torch.device, figure: dict[str, float]
                             ) -> dict:
    """Optimizer steps per second of training ck's config (fresh weights from its seed) at its training size:
    before / fp32 / bf16; and the roofline of a step: its floating-point operations (forward and backward, counted
    by torch.utils.flop_counter), the GFLOP/s each mode achieved, and the steps per second the matmul figure would
    allow (no step can run faster than its products at the machine's matmul rate)."""
    from ttc.engine.train import LossModule, TrainConfig, _train_step

    task = get_task(ck.task)
    size = training_size(ck)
    layers = min(ck.config.layers, 8 if cfg.quick else 30)
    batch = 8 if cfg.quick else 32
    tc = TrainConfig(task=ck.task, family=ck.family, arch=ck.arch, width=ck.config.width, depth=ck.config.depth,
                     layers=layers, heads=ck.config.heads, norm=ck.config.norm, bias=ck.config.bias,
                     sizes=[size], batch=batch, window=ck.config.window, slots=ck.config.slots)
    steps = 1 if cfg.quick else 3
    options = tc.family_option_values()
    settings = tc.training_settings(options)
    xs, ys = task.generate(size, batch, SEED)
    fns = {}
    for mode in MODES:
        model = copy.deepcopy(ck.model).to(dev).train()
        if task.spatial_dims == 2 and mode != "before":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        lm = LossModule(model, tc)
        x, y = tensors(task, xs, ys, dev)
        if mode != "before" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)

        def run(model=model, opt=opt, lm=lm, x=x, y=y) -> None:
            for i in range(steps):
                loss, _ = lm(x, y, _train_step(tc, i, 0, x, settings, options))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        fns[mode] = _in_mode(mode, model, run)
    t = _rounds(fns, 2 if cfg.quick else 3, dev)
    sps = {m: spread([steps / v for v in vs]) for m, vs in t.items()}
    flops = _counted_flops(fns["fp32"])  # the timed steps again (the step index draws the same training iterations)
    step_flops = flops / steps
    achieved = {m: flops / statistics.median(vs) / 1e9 for m, vs in t.items()}
    ceiling = figure["bf16"] * 1e9 / step_flops  # steps/s at the bf16 matmul figure
    return entry("precision", f"training steps/s, bf16 vs before: {ck.task} ({ck.name})",
                 f"optimizer steps per second in bf16 / in float32 as before; batch {batch} of size {size}, "
                 f"{layers} training iterations, the family's loss", [a / b for a, b in
                                                                      zip(t["before"], t["bf16"], strict=True)],
                 timed=True, steps_per_second=sps,
                 bf16_vs_fp32=spread([a / b for a, b in zip(t["fp32"], t["bf16"], strict=True)]),
                 flop_per_step=step_flops, step_gflops={m: float(f"{v:.4g}") for m, v in achieved.items()},
                 fraction_of_bf16_matmul={m: round(v / figure["bf16"], 3) for m, v in achieved.items()},
                 ceiling_steps_per_second=round(ceiling, 1),
                 ceiling_vs_before=round(ceiling * statistics.median(t["before"]) / steps, 2),
                 setup={"checkpoint": ck.name, "task": ck.task, "size": size, "batch": batch, "layers": layers,
                        "device": dev.type})


def bench_precision(cks: list[Checkpoint], cfg: BenchConfig, dev: torch.device, say: Callable[[str], None],
                    limit: Callable[[list], list]) -> list[dict]:
    """The whole group: the matmul figure, every checkpoint's runs, one training entry per task."""
    figure = matmul_figure(dev, cfg.quick)
    out = [entry("precision", "matmul figure, bf16 vs fp32",
                 f"GFLOP/s of a {1024 if cfg.quick else 2048}-square matmul in bf16 / in float32 (this process, "
                 f"{torch.get_num_threads()} threads): the roofline the runs are measured against",
                 [figure["bf16"] / figure["fp32"]], timed=False, gflops={k: round(v, 1) for k, v in figure.items()},
                 auto=prec.describe(dev))]
    for ck in limit(cks):
        say(f"precision {ck.name}")
        out += bench_precision_runs(ck, cfg, dev, figure)
    looped: dict[str, Checkpoint] = {}
    for ck in cks:  # per task, its looped (not fixed-depth, solver-free) checkpoint of the task's default arch first
        if ck.model.fixed_depth or ck.model.has_solver or ck.model.needs_grad:
            continue
        best = looped.get(ck.task)
        if best is None or (ck.arch == get_task(ck.task).default_arch and best.arch != ck.arch):
            looped[ck.task] = ck
    for ck in limit(list(looped.values())):
        say(f"precision training {ck.task}")
        out.append(bench_precision_training(ck, cfg, dev, figure))
    return out
