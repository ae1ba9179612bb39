"""Problems as .npz files (keys task, size, inputs, targets), validated on load."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .base import TaskError, optional

MAX_NPZ_BYTES = 512 * 1024 * 1024


def save_npz(path: str | Path, task: str, size: int, inputs: np.ndarray, targets: np.ndarray) -> None:
    # through a file object: given a path, numpy would append ".npz" to any other name
    with open(path, "wb") as f:
        np.savez_compressed(f, task=np.array(task), size=np.array(size, dtype=np.int64),
                            inputs=inputs.astype(np.uint8), targets=targets.astype(np.uint8))


def load_npz(path: str | Path) -> tuple[str, int, np.ndarray, np.ndarray]:
    """(task, size, inputs, targets) after checking keys, dtypes, shapes and values."""
    from . import get_task  # late: the registry imports this module

    path = Path(path)
    if not path.is_file():
        raise TaskError(f"data file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_NPZ_BYTES:
        raise TaskError(f"data file {str(path)!r} is larger than {MAX_NPZ_BYTES} bytes")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("it holds a single array, not the keys task, size, inputs, targets")
        with z:
            # the uncompressed sizes, before anything is inflated (a small file can hold huge arrays)
            inflated = sum(i.file_size for i in z.zip.infolist())
            if inflated > MAX_NPZ_BYTES:
                raise ValueError(f"it holds {inflated} bytes uncompressed; the limit is {MAX_NPZ_BYTES}")
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise TaskError(f"data file {str(path)!r} is not a readable .npz without pickles: {e}") from None
    missing = [k for k in ("task", "size", "inputs", "targets") if k not in arrays]
    if missing:
        raise TaskError(f"data file is missing keys {missing}; required: task, size, inputs, targets")
    task_arr, size_arr = arrays["task"], arrays["size"]
    if task_arr.shape != () or task_arr.dtype.kind not in "US":
        raise TaskError(f"'task' must be a string scalar, got dtype {task_arr.dtype} shape {task_arr.shape}")
    if size_arr.shape != () or size_arr.dtype.kind not in "iu":
        raise TaskError(f"'size' must be an integer scalar, got dtype {size_arr.dtype} shape {size_arr.shape}")
    task = get_task(task_arr.item().decode("utf-8", "replace") if task_arr.dtype.kind == "S" else str(task_arr))
    size = task.sizes.check(task.name, int(size_arr))
    inputs, targets = arrays["inputs"], arrays["targets"]
    check = optional(task, "check_arrays")  # a task whose values are not bits checks its own (sudoku)
    for key, arr, shape in (("inputs", inputs, task.input_shape(size)), ("targets", targets, task.target_shape(size))):
        if arr.dtype != np.uint8:
            raise TaskError(f"'{key}' must have dtype uint8, got {arr.dtype}")
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
            raise TaskError(f"'{key}' must have shape (n, {', '.join(map(str, shape))}) for {task.name} "
                            f"size {size}, got {tuple(arr.shape)}")
        if arr.size and arr.max() > 1 and check is None:
            raise TaskError(f"'{key}' must hold only 0 and 1, found {int(arr.max())}")
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise TaskError(f"inputs and targets must hold the same positive count, got {inputs.shape[0]} "
                        f"and {targets.shape[0]}")
    if check is not None:
        check(inputs, targets, size)
    return task.name, size, inputs, targets
