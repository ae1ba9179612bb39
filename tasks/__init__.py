"""Algorithmic tasks that grow harder with size, and .npz I/O for their problems."""

from models.registry import Registry  # a leaf module: the one registry helper (tasks import nothing else of models)

from .addition import Addition as Addition
from .base import SizeRange as SizeRange
from .base import Task as Task
from .base import TaskError as TaskError
from .base import optional as optional
from .base import tensors as tensors
from .io import load_npz as load_npz
from .io import save_npz as save_npz
from .mazes import Mazes as Mazes
from .prefix_sums import PrefixSums as PrefixSums
from .sudoku import Sudoku as Sudoku

TASKS: Registry = Registry("task", TaskError,
                           entries={t.name: t for t in (PrefixSums(), Addition(), Mazes(), Sudoku())})

_REQUIRED = ("name", "sizes", "in_channels", "spatial_dims", "classes", "default_arch", "train_size",
             "dashboard_size", "axis_label", "generate", "input_shape", "target_shape", "encode", "size_of", "render")


def register_task(task: Task) -> Task:
    """Add a task instance (or a class, instantiated) under its `name`; it then serves every command and page.
    Missing protocol attributes are an error naming them. Usable as a class decorator."""
    obj = task() if isinstance(task, type) else task
    missing = [a for a in _REQUIRED if not hasattr(obj, a)]
    if missing:
        raise TaskError(f"task {getattr(obj, 'name', obj)!r} lacks {missing} of the Task protocol")
    if not isinstance(obj.name, str) or not obj.name.isidentifier():
        raise TaskError(f"a task name must be an identifier, got {obj.name!r}")
    TASKS.register(obj.name, obj)
    return task


def get_task(name: str) -> Task:
    """The task registered under name; an unknown name raises with the known ones."""
    return TASKS.lookup(name)
