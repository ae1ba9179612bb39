"""Models: shapes for every task x family x core, the streaming forward contract, configs and registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_SIZE, TASK_ARCHS, TINY, tiny_model

from models import FAMILIES, ConfigError, ModelConfig, build_model, get_family
from models.cores import TransformerBlock
from tasks import get_task

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = 5  # more than TINY["layers"], so explicit models show that a larger budget buys nothing
CASES = [(task, family, arch) for task, arch in TASK_ARCHS for family in FAMILIES]


def _batch(task_name: str, size: int, n: int = 3, seed: int = 1) -> tuple[torch.Tensor, tuple[int, ...]]:
    task = get_task(task_name)
    x, _ = task.generate(size, n, seed=seed)
    return task.encode(torch.from_numpy(x)), task.target_shape(size)


@pytest.mark.parametrize("task,family,arch", CASES)
def test_stream_yields_one_state_per_iteration_with_contract_shapes(task, family, arch):
    x, spatial = _batch(task, SMALL_SIZE[task])
    model = tiny_model(task, family, arch)
    with torch.no_grad():
        states = list(model.stream(x, BUDGET))
    expected = TINY["layers"] if family == "explicit" else BUDGET
    assert [s.k for s in states] == list(range(1, expected + 1))
    for s in states:
        assert s.z.shape == (3, model.state_channels, *spatial)
        assert s.logits.shape == (3, get_task(task).classes, *spatial)
        assert torch.isfinite(s.logits).all()
    nfes = [s.nfe for s in states]
    assert nfes[0] >= 1 and nfes == sorted(nfes)
    if family == "deq":  # the solver's own per-sample residual and stops
        assert all(s.residual.shape == (3,) and s.converged.dtype == torch.bool for s in states)


@pytest.mark.parametrize("task,family,arch", CASES)
def test_forward_equals_the_last_streamed_logits(task, family, arch):
    x, _ = _batch(task, SMALL_SIZE[task])
    model = tiny_model(task, family, arch)
    with torch.no_grad():
        last = list(model.stream(x, BUDGET))[-1].logits
        assert torch.equal(model(x, BUDGET), last)


@pytest.mark.parametrize("task,family,arch", CASES)
def test_forward_is_differentiable_into_every_block(task, family, arch):
    x, _ = _batch(task, SMALL_SIZE[task])
    model = tiny_model(task, family, arch).train()
    model(x, BUDGET).square().mean().backward()
    # every block the family has (an energy-based model has no readout: its answer is the descended y)
    names = ("encoder", "readout", "block" if family != "explicit" else "blocks")
    for name in (n for n in names if getattr(model, n) is not None):
        grads = [p.grad for p in getattr(model, name).parameters()]
        if family == "ebm":  # a weight that shifts the energy by a constant (a final bias) cannot steer descent
            grads = [g for g in grads if g is not None]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("task,arch", TASK_ARCHS)
def test_explicit_depth_is_fixed_whatever_the_budget(task, arch):
    x, _ = _batch(task, SMALL_SIZE[task])
    model = tiny_model(task, "explicit", arch)
    with torch.no_grad():
        assert torch.equal(model(x, 1), model(x, 50))
        assert len(list(model.stream(x, 1))) == TINY["layers"]


@pytest.mark.parametrize("family", ["recursive", "deq"])
@pytest.mark.parametrize("task,arch", TASK_ARCHS)
def test_a_shorter_budget_is_a_prefix_of_a_longer_one(task, arch, family):
    x, _ = _batch(task, SMALL_SIZE[task])
    model = tiny_model(task, family, arch)
    with torch.no_grad():
        short, long = list(model.stream(x, 3)), list(model.stream(x, 7))
    assert len(long) == 7
    for a, b in zip(short, long[:3], strict=True):
        assert torch.equal(a.z, b.z) and torch.equal(a.logits, b.logits)
    # thinking longer changes the answer's logits: the loop really runs
    assert not torch.equal(long[0].logits, long[-1].logits)


@pytest.mark.parametrize("task,arch", TASK_ARCHS)
def test_one_model_runs_on_larger_problems_than_it_was_built_for(task, arch):
    model = tiny_model(task, "recursive", arch)
    t = get_task(task)
    for size in (SMALL_SIZE[task], min(4 * SMALL_SIZE[task] + 1, t.sizes.hi)):  # sudoku: more blanks, same grid
        x, spatial = _batch(task, size, n=2)
        with torch.no_grad():
            assert model(x, 2).shape == (2, t.classes, *spatial)


def test_transformer_block_is_causal():
    cfg = ModelConfig(family="recursive", arch="transformer", in_channels=1, **TINY)
    block = TransformerBlock(cfg).eval()
    g = torch.Generator().manual_seed(0)
    z, e = torch.randn(2, 8, 10, generator=g), torch.randn(2, 8, 10, generator=g)
    z2, e2 = z.clone(), e.clone()
    z2[..., 6:] += 1.0
    e2[..., 7:] *= -1.0
    with torch.no_grad():
        a, b = block(z, e), block(z2, e2)
    assert torch.allclose(a[..., :6], b[..., :6], atol=1e-6)  # positions before 6 cannot see the change
    assert not torch.allclose(a[..., 6:], b[..., 6:])


def test_recursive_model_recalls_the_input_every_iteration():
    # zeroing the state after a few iterations and going on must still depend on the problem
    x, _ = _batch("prefix_sums", 9, n=2)
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    with torch.no_grad():
        z0 = torch.zeros(2, TINY["width"], 9)
        a = list(model.stream(x, 2, z0=z0))[-1].logits
        b = list(model.stream(1 - x, 2, z0=z0))[-1].logits
    assert not torch.equal(a, b)


# ---- construction: seeds, configs, the registry -----------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_initialisation_is_deterministic_by_seed(family):
    def weights(seed):
        return torch.cat([p.flatten() for p in tiny_model("mazes", family, "conv2d", seed=seed).parameters()])

    torch.manual_seed(123)  # the global RNG must not matter
    a = weights(0)
    torch.manual_seed(456)
    assert torch.equal(a, weights(0))
    assert not torch.equal(a, weights(1))


def test_unknown_family_names_the_known_ones():
    with pytest.raises(ConfigError, match="explicit, recursive, deq"):
        get_family("transformerxl")
    with pytest.raises(ConfigError, match="unknown family 'lstm'; known families: explicit, recursive, deq"):
        ModelConfig(family="lstm", arch="conv1d", in_channels=1)


def test_unknown_arch_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown arch 'mlp'; known archs: conv1d, conv2d, transformer"):
        ModelConfig(family="recursive", arch="mlp", in_channels=1)


def test_config_round_trips_and_refuses_unknown_or_missing_keys():
    cfg = ModelConfig(family="deq", arch="transformer", in_channels=2, width=16, heads=4, norm=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"unknown config keys \['dropout'\]"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})
    with pytest.raises(ConfigError, match="missing required keys"):
        ModelConfig.from_dict({"family": "deq", "arch": "conv1d"})


@pytest.mark.parametrize(
    "field,value",
    [
        ("width", 2),
        ("width", 2048),
        ("depth", 0),
        ("layers", 257),
        ("in_channels", 0),
        ("heads", 0),
        ("width", 8.0),
        ("depth", True),
        ("kernel", 4),
        ("kernel", True),
        ("kernel", 3.0),
        ("norm", 1),
    ],
)
def test_config_values_out_of_range_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{"family": "recursive", "arch": "conv1d", "in_channels": 1, field: value})


def test_transformer_width_must_divide_into_heads():
    with pytest.raises(ConfigError, match="divisible by heads"):
        ModelConfig(family="recursive", arch="transformer", in_channels=1, width=10, heads=4)


@pytest.mark.parametrize("width", [4, 6, 12, 20, 24])
def test_group_norm_builds_at_any_width(width):
    model = build_model(ModelConfig(family="deq", arch="conv2d", in_channels=3, width=width, depth=1, norm=True))
    x, _ = _batch("mazes", 5, n=1)
    with torch.no_grad():
        assert model(x, 2).shape == (1, 2, 7, 7)


@pytest.mark.parametrize("iters", [0, -1, True, 2.0])
def test_forward_refuses_a_budget_that_is_not_a_positive_integer(iters):
    x, _ = _batch("prefix_sums", 5, n=1)
    with pytest.raises(ValueError, match="positive integer"):
        tiny_model("prefix_sums", "recursive", "conv1d")(x, iters)


def test_forward_without_budget_runs_the_trained_iteration_count():
    x, _ = _batch("prefix_sums", 5, n=1)
    model = tiny_model("prefix_sums", "recursive", "conv1d", layers=4)
    with torch.no_grad():
        assert torch.equal(model(x), model(x, 4)) and not torch.equal(model(x), model(x, 3))


def test_parameter_count_is_the_tensors_numel():
    model = tiny_model("addition", "explicit", "conv1d")
    assert model.num_params() == sum(int(np.prod(t.shape)) for t in model.state_dict().values())
