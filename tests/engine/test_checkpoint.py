"""Checkpoints: safetensors + .json card round trip, self-description, validation, never unpickling."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from conftest import SMALL_SIZE, TASK_ARCHS, forge_checkpoint, tiny_model
from safetensors import safe_open

from models import FAMILIES
from tasks import TaskError, get_task
from ttc.engine.checkpoint import (
    CheckpointError,
    checkpoint_name,
    checkpoint_task,
    load_checkpoint,
    load_checkpoint_bytes,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [(task, family, arch) for task, arch in TASK_ARCHS for family in FAMILIES]


def _outputs(model, task: str) -> torch.Tensor:
    t = get_task(task)
    x, _ = t.generate(SMALL_SIZE[task], 3, seed=9)
    with torch.no_grad():
        return model(t.encode(torch.from_numpy(x)), 4)


@pytest.mark.parametrize("task,family,arch", CASES)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, task, family, arch):
    model = tiny_model(task, family, arch, seed=3)
    path = save_checkpoint(tmp_path / "ck.safetensors", model, task)
    ck = load_checkpoint(path)
    assert (ck.task, ck.family, ck.arch, ck.config) == (task, family, arch, model.config)
    assert not ck.model.training
    assert torch.equal(_outputs(ck.model, task), _outputs(model, task))
    # and a model from another seed is told apart: the comparison can fail
    assert not torch.equal(_outputs(tiny_model(task, family, arch, seed=4), task), _outputs(model, task))


def test_card_is_written_beside_the_weights_and_in_the_metadata(tmp_path):
    model = tiny_model("mazes", "recursive", "conv2d")
    path = save_checkpoint(tmp_path / "m", model, "mazes", card={"train_seconds": 1.5, "note": "tiny"})
    assert path == tmp_path / "m.safetensors" and path.is_file()
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["task"] == "mazes" and card["family"] == "recursive" and card["arch"] == "conv2d"
    assert card["config"] == model.config.to_dict() and card["params"] == model.num_params()
    assert card["train_seconds"] == 1.5 and card["note"] == "tiny"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "ttc-checkpoint/1"
    assert (meta["task"], meta["family"], meta["arch"]) == ("mazes", "recursive", "conv2d")
    assert json.loads(meta["config"]) == model.config.to_dict() and json.loads(meta["card"]) == card
    assert load_checkpoint(path).card == card


def test_load_from_bytes_equals_load_from_file(tmp_path):
    model = tiny_model("addition", "deq", "transformer")
    path = save_checkpoint(tmp_path / "a.safetensors", model, "addition")
    a, b = load_checkpoint(path), load_checkpoint_bytes(path.read_bytes(), name="upload")
    assert a.config == b.config and torch.equal(_outputs(a.model, "addition"), _outputs(b.model, "addition"))


class _Trap:
    """Unpickling this creates a directory: proof of whether a loader unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_renamed_to_safetensors_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"weights": _Trap(str(marker))})
    fake = tmp_path / "evil.safetensors"
    fake.write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(fake)
    with pytest.raises(CheckpointError):
        load_checkpoint_bytes(payload)
    assert not marker.exists()
    pickle.loads(payload)  # the trap works: unpickling would have left the marker
    assert marker.exists()


def test_a_torch_save_file_renamed_to_safetensors_is_refused(tmp_path):
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    fake = tmp_path / "prefix_sums-recursive.safetensors"
    torch.save(model.state_dict(), fake)
    with pytest.raises(CheckpointError):
        load_checkpoint(fake)


def test_only_safetensors_files_are_loaded(tmp_path):
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    path = save_checkpoint(tmp_path / "ck.safetensors", model, "prefix_sums")
    pt = tmp_path / "ck.pt"
    pt.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="must be a .safetensors file"):
        load_checkpoint(pt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def _config_with(model, **over) -> str:
    return json.dumps({**model.config.to_dict(), **over})


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda m: {"config": _config_with(m, family="lstm"), "family": "lstm"},
            "unknown family 'lstm'; known families: explicit, recursive, deq",
        ),
        (
            lambda m: {"config": _config_with(m, arch="mlp"), "arch": "mlp"},
            "unknown arch 'mlp'; known archs: conv1d, conv2d, transformer",
        ),
        (lambda m: {"task": "sorting"}, "unknown; known tasks: prefix_sums, addition, mazes"),
        (lambda m: {"task": None}, "missing"),
        (lambda m: {"config": "{not json"}, "not valid JSON"),
        (lambda m: {"config": _config_with(m, dropout=0.1)}, "unknown config keys"),
        (lambda m: {"family": "deq"}, "disagree"),
        (lambda m: {"config": _config_with(m, width=16)}, "shape"),
        (lambda m: {"config": _config_with(m, depth=2)}, "tensor names do not match"),
        (lambda m: {"task": "mazes"}, "in_channels"),
    ],
)
def test_checkpoints_with_bad_metadata_are_refused_naming_the_problem(edit, message):
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))  # unedited, the same forgery loads
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums", edit(model)))


def test_an_arch_that_does_not_serve_the_task_is_refused():
    model = tiny_model("mazes", "recursive", "conv2d")
    forged = forge_checkpoint(model, "mazes", {"config": _config_with(model, arch="conv1d"), "arch": "conv1d"})
    with pytest.raises(CheckpointError, match="arch 'conv1d' does not serve task mazes; archs for it: conv2d"):
        load_checkpoint_bytes(forged)


def test_non_finite_weights_and_truncated_files_are_refused(tmp_path):
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    with torch.no_grad():
        model.readout.c2.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))
    good = save_checkpoint(tmp_path / "g.safetensors", tiny_model("prefix_sums", "recursive", "conv1d"), "prefix_sums")
    data = good.read_bytes()
    for cut in (4, 100, len(data) - 10):
        with pytest.raises(CheckpointError):
            load_checkpoint_bytes(data[:cut])


def test_checkpoint_for_another_task_than_the_data_is_refused(tmp_path):
    ck = load_checkpoint(
        save_checkpoint(tmp_path / "a.safetensors", tiny_model("addition", "deq", "conv1d"), "addition")
    )
    checkpoint_task(ck, "addition")
    with pytest.raises(TaskError, match="checkpoint is for task 'addition' but the data is 'prefix_sums'"):
        checkpoint_task(ck, "prefix_sums")


def test_checkpoint_names_leave_out_the_default_core():
    assert checkpoint_name("prefix_sums", "recursive", "conv1d") == "prefix_sums-recursive"
    assert checkpoint_name("prefix_sums", "deq", "transformer") == "prefix_sums-deq-transformer"
    assert checkpoint_name("mazes", "explicit", "conv2d") == "mazes-explicit"
