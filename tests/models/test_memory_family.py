"""The external-memory family: the stream contract with its memory state, determinism, what the memory holds, its
training loss, and hostile checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import forge_checkpoint, tiny_model

from models import ConfigError, ModelConfig, TrainStep, build_model
from models.memory import MemoryState
from tasks import get_task
from ttc.engine.checkpoint import CheckpointError, load_checkpoint_bytes, save_checkpoint
from ttc.engine.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


def _x(task: str = "prefix_sums", size: int = 12, n: int = 3, seed: int = 5) -> torch.Tensor:
    t = get_task(task)
    x, _ = t.generate(size, n, seed)
    return t.encode(torch.from_numpy(x))


@pytest.mark.parametrize("task,arch", [("prefix_sums", "conv1d"), ("addition", "transformer"), ("mazes", "conv2d")])
def test_every_iteration_reads_and_writes_the_slots(task, arch):
    size = {"prefix_sums": 12, "addition": 8, "mazes": 7}[task]
    model = tiny_model(task, "memory", arch, slots=5)
    x = _x(task, size)
    positions = int(np.prod(get_task(task).target_shape(size)))
    states = list(model.stream(x, 4))
    assert [s.k for s in states] == [1, 2, 3, 4] and [s.nfe for s in states] == [1, 2, 3, 4]
    for s in states:
        assert set(s.series) == set(model.extra_series) and all(v.shape == (3,) for v in s.series.values())
        for name in ("read", "write"):
            w = s.maps[name]
            assert w.shape == (3, positions, 5)
            assert torch.allclose(w.sum(-1), torch.ones(3, positions), atol=1e-5)  # weights over the slots
            assert (w >= 0).all()
        assert s.maps["memory"].shape == (3, 5)
    # the memory persists and changes across iterations: the slot norms move
    norms = torch.stack([s.series["memory_norm"] for s in states])
    assert not torch.allclose(norms[0], norms[-1])


def test_an_untrained_memory_model_is_its_recursive_core():
    """The read enters through a zero-initialised projection, so before training the memory changes nothing: the
    same core weights give the recursive family's outputs exactly (what a warm start from a recursive model
    relies on)."""
    mem = tiny_model("prefix_sums", "memory", "conv1d", seed=2)
    rec = tiny_model("prefix_sums", "recursive", "conv1d", seed=9)
    rec.load_state_dict({k: v for k, v in mem.state_dict().items() if k in rec.state_dict()})
    x = _x()
    with torch.no_grad():
        assert torch.equal(mem(x, 5), rec(x, 5))
        mem.read_in.weight.add_(0.5)  # a memory that is read changes the answer: the comparison can fail
        assert not torch.allclose(mem(x, 5), rec(x, 5))


def test_the_same_seed_builds_the_same_model_and_another_seed_another():
    a, b, c = (tiny_model("prefix_sums", "memory", "conv1d", seed=s) for s in (4, 4, 5))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.memory0, c.memory0)
    # distinct slots: identical ones would get identical addresses for ever
    assert torch.cdist(a.memory0, a.memory0).fill_diagonal_(1.0).min() > 0


def test_a_run_reproduces_from_its_seed():
    model = tiny_model("prefix_sums", "memory", "conv1d", seed=1)
    with torch.no_grad():
        model.read_in.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    task = get_task("prefix_sums")
    x, y = task.generate(10, 6, 3)
    a = evaluate(model, task, x, y, 6)
    b = evaluate(model, task, x, y, 6)
    assert a.to_dict() == {**b.to_dict()} and len(a.series["memory_norm"]) == 6


def test_the_stream_continues_from_a_memory_state():
    """Running 3 then 2 more cycles from the carried (z, M) equals running 5: the memory is part of the state."""
    model = tiny_model("prefix_sums", "memory", "conv1d", seed=1)
    with torch.no_grad():
        model.read_in.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        x = _x()
        mid = model.run(x, 3)
        assert isinstance(mid, MemoryState) and mid.m.shape == (3, model.config.slots, model.config.width)
        assert torch.allclose(model.state_readout(model.run(x, 2, z0=mid)), model(x, 5), atol=1e-6)
        # a plain latent as z0 starts the memory from its learned initial content
        assert torch.allclose(model.run(x, 5, z0=torch.zeros_like(mid.z)).z, model.run(x, 5).z)


def test_the_progressive_loss_trains_the_memory():
    torch.manual_seed(0)
    model = tiny_model("prefix_sums", "memory", "conv1d", seed=0).train()
    task = get_task("prefix_sums")
    xs, ys = task.generate(8, 16, 11)
    x, y = task.encode(torch.from_numpy(xs)), torch.from_numpy(ys).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn(logits):
        return torch.nn.functional.cross_entropy(logits, y)

    first = None
    for _ in range(25):
        loss, _ = model.training_loss(x, loss_fn, TrainStep(layers=3, n=1, k=2, alpha=0.5))
        opt.zero_grad()
        loss.backward()
        assert model.read_in.weight.grad.abs().sum() > 0  # the read is learned from the first step
        opt.step()
        first = float(loss) if first is None else first
    assert float(loss) < 0.8 * first
    assert model.query.weight.grad.abs().sum() > 0  # once the read matters, so does where it reads


@pytest.mark.parametrize("slots", [0, 257, 2.5, True])
def test_slots_out_of_range_are_refused(slots):
    with pytest.raises(ConfigError, match="slots"):
        ModelConfig(family="memory", arch="conv1d", in_channels=1, slots=slots)


def test_hostile_memory_checkpoints_are_refused(tmp_path):
    model = tiny_model("prefix_sums", "memory", "conv1d")
    load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))  # unedited, the forgery loads
    cfg = model.config.to_dict()
    for over, message in (({"slots": 3}, "shape"), ({"slots": 0}, "slots"), ({"family": "recursive"}, "disagree")):
        meta = {"config": json.dumps({**cfg, **over})}
        if "family" in over:
            meta = {"family": "recursive"}
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums", meta))
    with torch.no_grad():
        model.memory0[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))


def test_a_memory_checkpoint_round_trips_with_its_slots(tmp_path):
    model = build_model(ModelConfig(family="memory", arch="conv1d", in_channels=1, width=8, depth=1, layers=3,
                                    slots=3), seed=2)
    from ttc.engine.checkpoint import load_checkpoint

    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, "prefix_sums"))
    assert ck.config.slots == 3 and ck.model.memory0.shape == (3, 8)
    x = _x()
    with torch.no_grad():
        assert torch.equal(ck.model(x, 4), model.eval()(x, 4))


def test_the_memory_stays_bounded_however_long_the_loop_runs():
    """Writes are convex steps towards tanh(add): |M| <= max(1, |M_0|) after any number of cycles, for any
    weights (large random ones here) and any states the core produces (fresh random ones every cycle)."""
    model = tiny_model("prefix_sums", "memory", "conv1d", seed=3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (*model.write.parameters(), *model.query.parameters(), *model.read_in.parameters()):
            p.copy_(3 * torch.randn(p.shape, generator=gen))
        bound = max(1.0, float(model.memory0.abs().max()))
        e = model.encoder(_x(size=20))
        st = model.initial_state(e, None)
        for _ in range(300):
            z = 5 * torch.randn(st.z.shape, generator=gen)
            st = model._cycle(MemoryState(z, st.m), e)[0]
            assert float(st.m.abs().max()) <= bound + 1e-5
    assert torch.isfinite(st.m).all()
