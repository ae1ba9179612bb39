"""Algorithmic tasks that grow harder with size, and .npz I/O for their problems."""

from .addition import Addition as Addition
from .base import SizeRange as SizeRange
from .base import Task as Task
from .base import TaskError as TaskError
from .io import load_npz as load_npz
from .io import save_npz as save_npz
from .mazes import Mazes as Mazes
from .prefix_sums import PrefixSums as PrefixSums

TASKS: dict[str, Task] = {t.name: t for t in (PrefixSums(), Addition(), Mazes())}


def get_task(name: str) -> Task:
    """The task registered under name; an unknown name raises with the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
