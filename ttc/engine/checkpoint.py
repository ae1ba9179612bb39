"""Checkpoint I/O: safetensors weights with self-describing metadata, and a .json card beside them.

A checkpoint is validated before any model is built: header size and JSON, the required metadata with
known values, tensor names, shapes and dtypes against the config, finite values, total size. Loading
never unpickles anything.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from models import ConfigError, IterativeModel, ModelConfig, build_model
from models.config import check_arch_dims
from tasks import TASKS, TaskError, get_task

FORMAT = "ttc-checkpoint/1"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
_FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class CheckpointError(ValueError):
    """A file that is not a valid TTC checkpoint; the message says what is wrong, in one line of at most
    MAX_MESSAGE characters (a hostile file's names and values are cut, never echoed whole)."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 160] + " ... " + message[-155:]
        super().__init__(message)


MAX_MESSAGE = 500


@dataclass
class Checkpoint:
    model: IterativeModel
    task: str
    config: ModelConfig
    card: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else f"{self.task}-{self.family}-{self.arch}"

    @property
    def train_sizes(self) -> list[int]:
        """The sizes the card says it trained on (`train_sizes`, else its train_config's `sizes`; [] if neither)."""
        sizes = self.card.get("train_sizes") or (self.card.get("train_config") or {}).get("sizes") or []
        return [int(s) for s in sizes if isinstance(s, (int, float))] if isinstance(sizes, list) else []


def checkpoint_name(task: str, family: str, arch: str) -> str:
    """{task}-{family}[-{arch}]: the arch is left out when it is the task's default core."""
    default = get_task(task).default_arch if task in TASKS else None
    return f"{task}-{family}" + ("" if arch == default else f"-{arch}")


def save_checkpoint(path: str | Path, model: IterativeModel, task: str, card: dict | None = None) -> Path:
    """Write path (.safetensors) and its .json card; returns the weights path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    card = dict(card or {})
    card.update(task=task, family=model.config.family, arch=model.config.arch,
                config=model.config.to_dict(), params=model.num_params())
    meta = {"format": FORMAT, "task": task, "family": model.config.family, "arch": model.config.arch,
            "config": json.dumps(model.config.to_dict()), "card": json.dumps(card)}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = st_save(state, metadata=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".safetensors.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
    tmp_card = path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n")
    tmp_card.replace(path.with_suffix(".json"))
    return path


def _looks_like(data: bytes) -> str:
    """What a file that is not safetensors seems to be, for the refusal message ("" when unknown)."""
    if data[:4] == b"PK\x03\x04":
        return "; it is a zip archive, such as a torch.save .pt file, and those are never loaded"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "; it is a Python pickle, and pickles are never loaded"
    return ""


def read_header(data: bytes) -> tuple[dict, dict]:
    """(tensor entries, metadata) from a safetensors byte string, checked for sanity."""
    if len(data) < 8:
        raise CheckpointError(f"file too short to be safetensors ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit (not a TTC checkpoint"
                              f"{_looks_like(data)})")
    if 8 + n > len(data):
        raise CheckpointError(f"file truncated: header claims {n} bytes, file holds {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (ValueError, RecursionError) as e:  # also nesting too deep and numbers too long to convert
        raise CheckpointError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError("header __metadata__ must map strings to strings")
    body = len(data) - 8 - n
    for name, entry in header.items():
        if (not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry)
                or not isinstance(entry["dtype"], str) or not isinstance(entry["shape"], list)
                or not all(type(d) is int and d >= 0 for d in entry["shape"])):
            raise CheckpointError(f"tensor entry {name!r} is malformed (needs dtype, a shape of non-negative "
                                  "integers and data_offsets)")
        offs = entry["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= body):
            raise CheckpointError(f"tensor {name!r} has data offsets {offs!r} outside the file's {body} data bytes "
                                  "(a truncated or corrupt file)")
    return header, meta


def _parse_meta(meta: dict) -> tuple[str, ModelConfig, dict]:
    missing = [k for k in ("task", "family", "arch", "config") if k not in meta]
    if missing:
        raise CheckpointError(f"metadata is missing {missing}; a TTC checkpoint needs task, family, arch, config")
    if meta["task"] not in TASKS:
        raise CheckpointError(f"metadata task {meta['task']!r} is unknown; known tasks: {', '.join(TASKS)}")
    try:
        cfg_dict = json.loads(meta["config"])
        cfg = ModelConfig.from_dict(cfg_dict)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"metadata config is invalid: {e}") from None
    except (ValueError, RecursionError) as e:  # ConfigError is a ValueError too: it is caught above
        raise CheckpointError(f"metadata config is not valid JSON: {e}") from None
    if cfg.family != meta["family"] or cfg.arch != meta["arch"]:
        raise CheckpointError(f"metadata family/arch {meta['family']}/{meta['arch']} disagree with the config's "
                              f"{cfg.family}/{cfg.arch}")
    task = get_task(meta["task"])
    if cfg.in_channels != task.in_channels:
        raise CheckpointError(f"config in_channels {cfg.in_channels} does not fit task {task.name} "
                              f"({task.in_channels} channels)")
    if cfg.classes != task.classes:
        raise CheckpointError(f"config classes {cfg.classes} does not fit task {task.name} ({task.classes} classes)")
    try:
        check_arch_dims(cfg.arch, task.spatial_dims, task.name)
    except ConfigError as e:
        raise CheckpointError(f"metadata config is invalid: {e}") from None
    try:
        card = json.loads(meta.get("card", "{}"))
    except (ValueError, RecursionError):
        card = {}
    return task.name, cfg, card if isinstance(card, dict) else {}


def load_checkpoint_bytes(data: bytes, name: str | None = None) -> Checkpoint:
    """Validate and load a checkpoint from bytes (an upload, or a file's contents)."""
    if len(data) > MAX_FILE_BYTES:
        raise CheckpointError(f"file of {len(data)} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    header, meta = read_header(data)
    task, cfg, card = _parse_meta(meta)
    with torch.device("meta"):  # names and shapes without storage: a forged config cannot make us allocate
        expected = build_model(cfg).state_dict()
    names, want = set(header), set(expected)
    if names != want:
        extra, miss = sorted(names - want)[:5], sorted(want - names)[:5]
        raise CheckpointError(f"tensor names do not match the config: missing {miss}, unexpected {extra}")
    for k, entry in header.items():
        if entry["dtype"] not in _FLOAT_DTYPES:
            raise CheckpointError(f"tensor {k!r} has dtype {entry['dtype']}; accepted: {', '.join(_FLOAT_DTYPES)}")
        if list(entry["shape"]) != list(expected[k].shape):
            raise CheckpointError(f"tensor {k!r} has shape {entry['shape']}, "
                                  f"the config needs {list(expected[k].shape)}")
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types for corrupt bodies
        raise CheckpointError(f"tensor data unreadable: {e}") from None
    for k, t in tensors.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"tensor {k!r} holds NaN or infinite values")
    model = build_model(cfg)  # its size is now bounded by the file's: every tensor's shape matched
    model.load_state_dict({k: t.to(expected[k].dtype) for k, t in tensors.items()})
    model.eval()
    model.settings = model.settings_from_card(card)  # the run settings the card recommends (DEQ: its solver)
    return Checkpoint(model=model, task=task, config=cfg, card=card, path=name)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Validate and load a .safetensors checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint {str(path)!r} must be a .safetensors file (pickles are never loaded)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"checkpoint of {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    return load_checkpoint_bytes(path.read_bytes(), name=str(path))


def list_checkpoints(folder: str | Path = "checkpoints") -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def checkpoint_task(ck: Checkpoint, task: str) -> None:
    """Raise if the checkpoint was trained for another task than the data's."""
    if ck.task != task:
        raise TaskError(f"checkpoint is for task {ck.task!r} but the data is {task!r}")
