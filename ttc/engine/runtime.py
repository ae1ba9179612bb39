"""Process set-up shared by the CLI and the dashboard: torch threads that do not oversubscribe, plugins, and
glibc's allocator.

`TTC_PLUGINS=mod1,mod2` names importable modules that register their own families, tasks or solvers
(`models.register_family`, `tasks.register_task`, `models.solvers.register_solver`); `load_plugins` imports
them before anything else, so `python -m ttc ...` and `streamlit run app.py` see them everywhere.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import sys

import torch

PLUGINS_ENV = "TTC_PLUGINS"
THREADS_ENV = "TTC_THREADS"
MALLOC_ENV = "TTC_MALLOC"  # "0": leave glibc's allocator as it is
MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts
TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
allocator = "default"  # what tune_allocator() did, for the bench's record of the machine
_tuned = False  # tune_allocator() has run for this process's environment


class PluginError(ImportError):
    """A module named in TTC_PLUGINS that cannot be imported; the message names it and the reason."""


def project_root():
    """The folder this copy of TTC Lab runs from: the one holding the `ttc` package, app.py and checkpoints/ (the
    one place that knows where the package sits in it)."""
    from pathlib import Path

    import ttc

    return Path(ttc.__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; else what platform says): for cards and the bench's record."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plugin_names(spec: str | None = None) -> list[str]:
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    return [n.strip() for n in spec.split(",") if n.strip()]


def load_plugins(spec: str | None = None) -> list[str]:
    """Import every module named in spec (default $TTC_PLUGINS); returns their names. The current folder is
    on the import path, as for `python -m`. Raises PluginError naming the module that failed and why."""
    names = plugin_names(spec)
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # a plugin's own error, whatever its type, is reported, never a traceback
            raise PluginError(f"{PLUGINS_ENV}: cannot import {name!r}: {type(e).__name__}: {e}") from None
    return names


def _to_int(v: str) -> int | None:
    try:
        return int(v.strip())
    except (ValueError, AttributeError):
        return None


def default_threads(env: str | None = None, cpus: int | None = None) -> int:
    """Torch threads for one process: $TTC_THREADS when set (1..256), else half the CPUs, 1 to 4. Runs of several
    sessions, and other jobs on the machine, then share the cores instead of oversubscribing them
    (oversubscribed OpenMP threads spin and slow a run down many times over)."""
    env = os.environ.get(THREADS_ENV) if env is None else env
    if env:
        v = _to_int(env)
        if v is not None and 1 <= v <= 256:
            return v
    return max(1, min(4, (cpus or os.cpu_count() or 2) // 2))


def set_threads(n: int | None) -> int:
    """Use n torch threads (0 or None: default_threads()); returns the number set."""
    n = n or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def tune_allocator(env: dict[str, str] | None = None) -> str:
    """Keep the memory of freed tensors in the process, for the CLI and the dashboard on Linux with glibc.

    By default glibc maps every block of 128 KiB or more (a state of 100 problems is 0.4 to 28 MiB) afresh from the
    kernel and unmaps it when freed, so a loop that frees one state and allocates the next pays a page fault per
    4 KiB, every iteration: a third of a small model's wall time on the development machine, and half a maze run's.
    Here blocks under MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD of freed heap stays mapped, so
    the next iteration reuses it (`python -m ttc bench --groups allocator` measures the difference; the price is
    that the process keeps that much freed memory). Not done when $TTC_MALLOC is 0 or the user set glibc's own
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_. Returns what was done, in words."""
    global allocator, _tuned
    if env is None and _tuned:  # the dashboard calls this on every rerun: once a process is enough
        return allocator
    if env is None:
        _tuned = True
    env = os.environ if env is None else env
    if env.get(MALLOC_ENV, "").strip() == "0":
        allocator = f"default (${MALLOC_ENV}=0)"
    elif any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        allocator = "default (the environment sets glibc's own thresholds)"
    elif not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        allocator = "default (not Linux with glibc)"
    else:
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                     TRIM_THRESHOLD) == 1
        except (OSError, AttributeError):
            ok = False
        allocator = (f"glibc tuned: blocks under {MMAP_THRESHOLD >> 20} MiB from the heap, {TRIM_THRESHOLD >> 20} "
                     f"MiB of freed memory kept" if ok else "default (mallopt refused)")
    return allocator


def process_group() -> tuple[int, int, torch.device]:
    """(world size, rank, device) of this process; under torchrun, the process group joined."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, rank, device
