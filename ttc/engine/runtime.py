"""Process set-up shared by the CLI and the dashboard: torch threads that do not oversubscribe, and plugins.

`TTC_PLUGINS=mod1,mod2` names importable modules that register their own families, tasks or solvers
(`models.register_family`, `tasks.register_task`, `models.solvers.register_solver`); `load_plugins` imports
them before anything else, so `python -m ttc ...` and `streamlit run app.py` see them everywhere.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch

PLUGINS_ENV = "TTC_PLUGINS"
THREADS_ENV = "TTC_THREADS"


class PluginError(ImportError):
    """A module named in TTC_PLUGINS that cannot be imported; the message names it and the reason."""


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
