"""The checkpoint catalog the dashboard offers: shipped files plus a session's uploads, as model cards.

The folder is `TTC_CHECKPOINTS` when set, else `checkpoints/`. Every entry is validated by the same
loader as the CLI (`load_checkpoint`); a file that fails validation is listed with its error and is
never offered for a run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ttc.engine.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint_bytes

ENV_FOLDER = "TTC_CHECKPOINTS"


def checkpoint_folder() -> Path:
    """Where the shipped checkpoints live: $TTC_CHECKPOINTS, else ./checkpoints."""
    return Path(os.environ.get(ENV_FOLDER) or "checkpoints")


@dataclass(frozen=True)
class FileStamp:
    """Identity of a checkpoint file's contents for caching: a rewritten file gets a new stamp."""

    path: str
    mtime_ns: int
    size: int


def file_stamps(folder: str | Path | None = None) -> list[FileStamp]:
    out = []
    for p in list_checkpoints(checkpoint_folder() if folder is None else folder):
        try:
            st = p.stat()
        except OSError:  # removed between the listing and the stat
            continue
        out.append(FileStamp(str(p), st.st_mtime_ns, st.st_size))
    return out


@dataclass
class Entry:
    """One checkpoint the dashboard can offer (ck set) or a file it refuses (error set)."""

    name: str  # file stem, or the uploaded file's stem
    source: str  # "file" or "upload"
    version: str  # changes whenever the weights change (mtime/size for files, content digest for uploads)
    ck: Checkpoint | None = None
    error: str | None = None
    data: bytes | None = None  # an upload's bytes (a run bundle ships them)
    path: str | None = None

    @property
    def ok(self) -> bool:
        return self.ck is not None

    @property
    def task(self) -> str | None:
        return self.ck.task if self.ck else None

    @property
    def family(self) -> str | None:
        return self.ck.family if self.ck else None

    def weights(self) -> bytes:
        """The checkpoint file's bytes."""
        if self.data is not None:
            return self.data
        return Path(self.path).read_bytes()


def load_file_entry(stamp: FileStamp) -> Entry:
    """Validate and load one checkpoint file (the dashboard wraps this in st.cache_resource)."""
    path = Path(stamp.path)
    version = f"{stamp.mtime_ns}-{stamp.size}"
    try:
        data = path.read_bytes()
        ck = load_checkpoint_bytes(data, name=str(path))
    except (OSError, CheckpointError, ValueError) as e:
        return Entry(name=path.stem, source="file", version=version, error=str(e), path=str(path))
    return Entry(name=path.stem, source="file", version=version, ck=ck, path=str(path))


def load_upload_entry(filename: str, data: bytes) -> Entry:
    """Validate an uploaded checkpoint; raises CheckpointError with the reason when it is refused."""
    if not filename.endswith(".safetensors"):
        raise CheckpointError(f"upload {filename!r} must be a .safetensors file (pickles are never loaded)")
    ck = load_checkpoint_bytes(data, name=filename)
    digest = hashlib.sha256(data).hexdigest()[:16]
    return Entry(name=Path(filename).stem, source="upload", version=digest, ck=ck, data=data)


def _number(v: object) -> float | None:
    """A card's number, or None for anything else (a card comes from the file, possibly hostile)."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def card_row(e: Entry) -> dict:
    """One row of the zoo table: what the model card says about the checkpoint. Card fields of the wrong
    type are left blank: the card is description only, and an uploaded one may hold anything."""
    if not e.ok:
        return {"name": e.name, "source": e.source, "status": f"invalid: {e.error}"}
    card, cfg = e.ck.card, e.ck.config
    best_val = card.get("best_val") if isinstance(card.get("best_val"), dict) else {}
    table = card.get("accuracy_table") if isinstance(card.get("accuracy_table"), list) else []
    sizes = card.get("train_sizes") if isinstance(card.get("train_sizes"), list) else []
    accs = "; ".join(f"{_number(r['size'])}@{_number(r['iters'])}: {r['accuracy']:.2f}" for r in table[:8]
                     if isinstance(r, dict) and {"size", "iters", "accuracy"} <= set(r)
                     and _number(r["accuracy"]) is not None)
    return {  # what a reader compares first (task, family, accuracies) on the left; provenance to the right
        "name": e.name,
        "task": e.ck.task,
        "family": cfg.family,
        "accuracies (size@iters: acc)": accs,
        "best val acc": _number(best_val.get("accuracy")),
        "val size@iters": (f"{_number(best_val['size'])}@{_number(best_val['iters'])}"
                           if {"size", "iters"} <= set(best_val) else ""),
        "arch": cfg.arch,
        "train sizes": ", ".join(str(_number(s)) for s in sizes[:16]),
        "train iters": cfg.layers,
        "params": e.ck.model.num_params(),
        "width": cfg.width,
        "train seconds": _number(card.get("train_seconds")),
        "source": e.source,
        "status": "ok",
    }
