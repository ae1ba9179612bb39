"""Compute precision: where a run may use bfloat16, and the one place that decides it.

A run's precision is `fp32` or `bf16`; `auto` resolves to bf16 where the device runs it fast (a CPU with AMX or
AVX-512 BF16, a CUDA device with bf16) and to fp32 elsewhere. Under bf16 only the cores compute in bfloat16: the
blocks, the input encoder and the readout run under `torch.autocast` and hand their result back in the dtype
their input state had (float32). Everything between two blocks stays float32: the recurrent state itself, the
residual and convergence tests, the solvers' iterates, histories and Anderson's least-squares, an energy's
descent step and its gradient's accumulation, the memory family's slots and addressing. So a bf16 run rounds
what one block computes, never what the loop accumulates (README, Performance: "Precision").

The precision is a property of a call, not of a model: `with use("bf16"): ...` sets it for the calling thread
(a context variable), `scoped(stream, precision)` sets it only while a stream computes its next iteration, and
the cores read it with `autocast_for(tensor)`. Weights stay float32 (training keeps float32 master weights;
checkpoints are float32).

2-D convolutions run channels-last (`layout`): on the CPU's oneDNN kernels that is several times faster in
both precisions; the values are the same.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import weakref
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# Convolutions channels-last (1-D ones as 1 x L 2-D ones). False restores the layout the project had before, in
# which float32 ran 3 to 5x slower on the CPU: the bench's baseline ("today's float32 default"); not a user knob.
CHANNELS_LAST = True
_active: contextvars.ContextVar[str] = contextvars.ContextVar("ttc_precision", default="fp32")


class PrecisionError(ValueError):
    """An unknown precision, or bf16 asked for on a device that does not run it."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_units() -> str | None:
    """The CPU's bfloat16 matrix units ("AMX", "AVX-512 BF16") or None, read from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set()
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return None
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    return None


def bf16_fast(device: torch.device | str) -> bool:
    """Whether the device runs bfloat16 faster than float32 (the `auto` rule)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_bf16_units() is not None


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 runs on the device at all (a CPU always can, slowly without the units: emulated; a CUDA device
    only with bf16)."""
    dev = torch.device(device)
    return dev.type == "cpu" or (dev.type == "cuda" and bf16_fast(dev))


def resolve(precision: str | None, device: torch.device | str, preferred: str | None = None) -> str:
    """`fp32` or `bf16` for a requested precision on a device. `auto` (or None) gives bf16 where the device is fast
    at it, unless `preferred` (a checkpoint card's "auto" precision, e.g. fp32 for a row that loses accuracy in
    bf16) says fp32. Raises PrecisionError for an unknown name or bf16 on a device without it."""
    p = "auto" if precision is None else str(precision).strip().lower()
    if p not in PRECISIONS:
        raise PrecisionError(f"unknown precision {str(precision)[:40]!r}; accepted: {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if p == "auto":
        if preferred == "fp32":
            return "fp32"
        return "bf16" if bf16_fast(dev) else "fp32"
    if p == "bf16" and not bf16_supported(dev):
        raise PrecisionError(f"bf16 is not supported on {dev.type} here; use --precision fp32 (or auto)")
    return p


def current() -> str:
    """The calling thread's precision ("fp32" unless inside `use`)."""
    return _active.get()


@contextlib.contextmanager
def use(precision: str) -> Iterator[None]:
    """Run the enclosed code at a resolved precision ("fp32" or "bf16")."""
    if precision not in ("fp32", "bf16"):
        raise PrecisionError(f"use() takes a resolved precision (fp32 or bf16), got {precision!r}")
    token = _active.set(precision)
    try:
        yield
    finally:
        _active.reset(token)


def scoped(stream: Iterator, precision) -> Iterator:
    """The items of `stream`, each computed at `precision` (a resolved name, or a function giving it before each
    item: a run that refines in float32 from some iteration on); the caller's code between items runs at its own
    (a generator that set the variable across a yield would leak it into its consumer)."""
    if precision == "fp32" and _active.get() == "fp32":
        yield from stream
        return
    it = iter(stream)
    while True:
        with use(precision() if callable(precision) else precision):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def autocast_for(t: torch.Tensor):
    """The autocast context a core enters for its computation on tensor t's device: bf16 when the thread's
    precision is bf16, else a no-op."""
    if _active.get() != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=t.device.type, dtype=torch.bfloat16)


def compute_dtype(t: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast computes in on t's device right now (None outside autocast)."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return None


def recalled(owner: object, e: torch.Tensor, prepare) -> torch.Tensor:
    """`prepare(e)` in the compute dtype, made once per input encoding: a loop recalls the same e into every
    iteration, and converting it each time cost a copy of the encoding per iteration (a third of a 1-D block's
    time in bf16). Cached on `owner` by the identity of e (a weak reference: a new problem batch, or a freed e,
    misses), the dtype and the grad mode (a conversion made without a graph never serves a differentiable call).
    Outside autocast it is prepare(e) itself."""
    dtype = compute_dtype(e)
    if dtype is None or e.dtype == dtype:
        return prepare(e)
    key = (dtype, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
    hit = getattr(owner, "_recalled", None)  # one tuple, read once: another thread may replace it meanwhile
    if hit is not None and hit[0]() is e and hit[1] == key:
        return hit[2]
    out = prepare(e).to(dtype)
    try:
        owner._recalled = (weakref.ref(e), key, out)
    except TypeError:  # a tensor that takes no weak reference: no cache
        pass
    return out


REFINE_BELOW = 2e-2  # a run or solve in bf16 refines in float32 once the median relative residual is below this


class Refining:
    """f(z) for a fixed-point solver: at the thread's precision while the solve is far from its fixed point, in
    float32 from the call where the median relative change ||f(z) - z|| / ||f(z)|| over the batch first falls below
    `below`, for the rest of this object's life (one solve and its backward). In bf16 a solve's residual cannot
    fall below bf16's resolution (measured: it stalls at 4e-3 on every shipped DEQ, so a tolerance of 1e-4 is never
    met and every sample runs the whole budget); refined, the iterations that move information run in bf16 and the
    last ones, that certify convergence, in float32 (mixed-precision iterative refinement)."""

    def __init__(self, f, below: float = REFINE_BELOW):
        self.f, self.below = f, below
        self.precision = current()
        self.refined_at: int | None = None  # the call from which f ran in float32 (None: never, or fp32 throughout)
        self.calls = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.precision == "fp32" or self.refined_at is not None:
            with use("fp32"):
                return self.f(z)
        out = self.f(z)
        with torch.no_grad():
            d = (out.detach() - z.detach()).flatten(1).norm(dim=1)
            rel = d / (out.detach().flatten(1).norm(dim=1) + 1e-12)
            if bool(torch.isfinite(rel).any()) and float(rel[torch.isfinite(rel)].median()) < self.below:
                self.refined_at = self.calls + 1
        return out


def back(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A core's result in the dtype of its input state (float32 between blocks)."""
    return out if out.dtype == like.dtype else out.to(like.dtype)


def layout(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """Channels-last for 2-D inputs (B, C, H, W): the model's 4-D weights and the input are converted (same
    values, another memory order); anything else is returned as it is."""
    if x.dim() != 4 or not CHANNELS_LAST:
        return model, x
    if any(p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)
    return model, x.contiguous(memory_format=torch.channels_last)


def describe(device: torch.device | str) -> str:
    """One line on what `auto` picks here and why (the CLI's help and the bench's machine record)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16 (CUDA device with bf16)" if bf16_fast(dev) else "fp32 (CUDA device without fast bf16)"
    units = cpu_bf16_units()
    return f"bf16 (CPU with {units})" if units else "fp32 (CPU without AMX or AVX-512 BF16)"
