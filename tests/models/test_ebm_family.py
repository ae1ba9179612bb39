"""The energy-based family: the stream contract of a descent, stopping and divergence as data, the training loss,
memory modes, the energy as a verifier, hostile checkpoints, and (on the shipped checkpoints) that descent lowers
the energy and that the true answer sits below corrupted ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import forge_checkpoint, tiny_model
from torch.nn import functional as F

from models import ConfigError, EBMSettings, ModelConfig, TrainStep, build_model
from tasks import get_task
from ttc.engine.analyze import analyze, auroc
from ttc.engine.checkpoint import CheckpointError, load_checkpoint, load_checkpoint_bytes
from ttc.engine.evaluate import evaluate
from ttc.engine.memory import measure_step

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = [Path("checkpoints") / f"{task}-ebm.safetensors" for task in ("prefix_sums", "addition", "mazes")]


def _batch(task: str = "prefix_sums", size: int = 12, n: int = 3, seed: int = 5):
    t = get_task(task)
    x, y = t.generate(size, n, seed)
    return t.encode(torch.from_numpy(x)), torch.from_numpy(y).long()


@pytest.mark.parametrize("task,arch", [("prefix_sums", "conv1d"), ("addition", "transformer"), ("mazes", "conv2d")])
def test_every_iteration_is_one_descent_step(task, arch):
    size = {"prefix_sums": 12, "addition": 8, "mazes": 7}[task]
    model = tiny_model(task, "ebm", arch)
    x, _ = _batch(task, size)
    shape = (3, 1, *get_task(task).target_shape(size))
    states = list(model.stream(x, 4, settings=EBMSettings(tol=0.0)))
    assert [s.k for s in states] == [1, 2, 3, 4]
    assert [s.nfe for s in states] == [2, 3, 4, 5]  # the start's evaluation, then one per step
    prev = torch.full(shape, 0.5)
    for s in states:
        assert s.z.shape == shape and ((s.z > 0) & (s.z < 1)).all()  # y stays inside the box
        assert s.logits.shape == (3, 2, *shape[2:])
        assert torch.allclose(torch.softmax(s.logits, 1)[:, 1:], s.z, atol=1e-5)  # the prediction reads y
        assert set(s.series) == {"energy", "grad_norm"} and all(v.shape == (3,) for v in s.series.values())
        assert torch.equal(s.maps["answer"], s.z)
        rms = (s.z - prev).flatten(1).norm(dim=1) / np.sqrt(np.prod(shape[1:]))
        assert torch.allclose(s.residual, rms, atol=1e-6)  # the residual is the RMS change per cell
        prev = s.z
    # the energy reported is the energy of the state reported
    e = model.encoder(x)
    with torch.no_grad():
        assert torch.allclose(model.energy(e, states[-1].z), states[-1].series["energy"], rtol=1e-4, atol=1e-4)


def test_the_descent_follows_the_gradient_of_the_energy():
    """One step with momentum 0 moves the logits of y by -step x grad_y E exactly (mirror descent)."""
    model = tiny_model("prefix_sums", "ebm", "conv1d", seed=3)
    x, _ = _batch()
    e = model.encoder(x).detach()
    y0 = torch.full((3, 1, 12), 0.5, requires_grad=True)
    (g,) = torch.autograd.grad(model.energy(e, y0).sum(), y0)
    s = EBMSettings(step=0.3, tol=0.0)
    first = next(iter(model.stream(x, 1, settings=s)))
    assert torch.allclose(torch.logit(first.z), -0.3 * g, atol=1e-5)


def test_a_sample_below_tol_stops_and_holds_its_answer():
    model = tiny_model("prefix_sums", "ebm", "conv1d", seed=1)
    x, _ = _batch(n=4)
    with torch.no_grad():
        model.head.weight.mul_(0.01)  # a flat energy: tiny steps, every sample stops at once
    states = list(model.stream(x, 6, settings=EBMSettings(tol=0.2)))
    assert bool(states[0].converged.all())
    for a, b in zip(states, states[1:], strict=False):
        assert torch.equal(a.z, b.z) and b.nfe == a.nfe  # stopped: nothing changes, nothing is spent
        assert torch.isnan(b.residual).all()


def test_a_nan_energy_is_divergence_not_an_exception():
    model = tiny_model("prefix_sums", "ebm", "conv1d")
    x, y = _batch(n=4)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    states = list(model.stream(x, 3))
    assert all(bool(s.diverged.all()) for s in states)
    assert all(torch.isfinite(s.z).all() for s in states)  # frozen at the last finite state
    curve = evaluate(model, get_task("prefix_sums"), *(t.numpy() for t in _raw()), 5)
    assert curve.diverged == 4


def _raw():
    t = get_task("prefix_sums")
    x, y = t.generate(12, 4, 5)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_noise_is_seeded_and_settings_are_validated():
    model = tiny_model("prefix_sums", "ebm", "conv1d")
    x, _ = _batch()
    s = EBMSettings(noise=0.1, seed=7, tol=0.0)
    a = [st.z for st in model.stream(x, 3, settings=s)]
    b = [st.z for st in model.stream(x, 3, settings=s)]
    c = [st.z for st in model.stream(x, 3, settings=s.updated(seed=8))]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[-1], c[-1])
    for bad in ({"step": 0}, {"step": -1}, {"momentum": 1.0}, {"noise": float("nan")}, {"tol": 2},
                {"init": "zeros"}, {"seed": -1}, {"nope": 1}):
        with pytest.raises(ConfigError):
            EBMSettings.from_options(**bad)


def test_uniform_starts_and_given_starts():
    model = tiny_model("prefix_sums", "ebm", "conv1d")
    x, _ = _batch()
    e = model.encoder(x)
    u = model.initial_coords(e, None, EBMSettings(init="uniform", seed=3))
    y = model.to_answer(u)
    assert 0.1 < float(y.std()) and torch.equal(u, model.initial_coords(e, None, EBMSettings(init="uniform", seed=3)))
    with pytest.raises(ValueError, match="shape"):
        model.initial_coords(e, torch.zeros(3, 2, 12), EBMSettings())
    start = model.perturbed_start(torch.zeros(3, 1, 12), 1.0, 1.0, torch.Generator().manual_seed(0))
    assert start.shape == (3, 1, 12) and float(start.min()) >= 0 and float(start.max()) <= 1


def test_more_classes_use_one_channel_per_class():
    cfg = ModelConfig(family="ebm", arch="conv1d", in_channels=1, width=8, depth=1, layers=3, classes=3)
    model = build_model(cfg)
    x = torch.zeros(2, 1, 6)
    st = list(model.stream(x, 2))[-1]
    assert st.z.shape == (2, 3, 6) and torch.allclose(st.z.sum(1), torch.ones(2, 6), atol=1e-5)
    assert st.logits.shape == (2, 3, 6)
    targets = torch.tensor([[0, 1, 2, 0, 1, 2]] * 2)
    assert torch.equal(model.answer(targets).argmax(1), targets)


def test_training_reaches_the_parameters_through_the_descent_and_lowers_the_loss():
    torch.manual_seed(0)
    model = tiny_model("prefix_sums", "ebm", "conv1d", width=16).train()
    x, y = _batch(size=8, n=16, seed=2)

    def loss_fn(logits):
        return F.cross_entropy(logits, y)

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for i in range(60):
        step = TrainStep(layers=6, n=i % 3, k=3, alpha=1.0, generator=torch.Generator().manual_seed(i),
                         extras={"targets": y})
        loss, logits = model.training_loss(x, loss_fn, step)
        assert logits.shape == (16, 2, 8)
        opt.zero_grad()
        loss.backward()
        if i == 0:  # every weight of the energy gets a gradient (the descent is differentiated)
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_the_landscape_terms_push_the_true_answer_down():
    """The contrastive term's gradient lowers E(x, y*) below the corrupted answers it is shown, by the margin."""
    model = tiny_model("prefix_sums", "ebm", "conv1d", seed=4)
    x, y = _batch(size=10, n=8)
    opts = {**model.TRAIN_DEFAULTS, "contrast": 1.0, "stationary": 0.0, "corrupt": 0.3}
    truth = model.answer(y)
    flip = torch.rand(truth.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    corrupted = torch.where(flip, 1 - truth, truth)  # the same draw landscape_loss makes from seed 0
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def gap() -> float:
        with torch.no_grad():
            e = model.encoder(x)
            return float((model.energy(e, corrupted) - model.energy(e, truth)).mean())

    before = gap()
    for _ in range(40):
        loss = model.landscape_loss(model.encoder(x), y, torch.full_like(truth, 0.5), opts,
                                    torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() > before and gap() > 0


def test_memory_of_training_through_the_steps():
    model = tiny_model("prefix_sums", "ebm", "conv1d", width=8)
    x, y = _batch(size=16, n=4)
    un = {k: measure_step(model, x, y, "unrolled", k) for k in (4, 16)}
    last = {k: measure_step(model, x, y, "last", k) for k in (4, 16)}
    assert un[16]["saved_bytes"] > 3 * un[4]["saved_bytes"]  # grows with the steps on the graph
    assert last[16]["saved_bytes"] == last[4]["saved_bytes"]  # one step on the graph at any depth
    assert un[16]["saved_bytes"] > 5 * last[16]["saved_bytes"]
    assert un[4]["nfe"] == 5 and last[4]["nfe"] == 6
    with pytest.raises(ValueError, match="accepted: unrolled, last"):
        measure_step(model, x, y, "implicit", 4)


def test_auroc_matches_its_definition():
    rng = np.random.default_rng(0)
    score = rng.normal(size=50).round(1)  # ties included
    pos = rng.random(50) < 0.4
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in score[pos] for b in score[~pos]])
    assert auroc(score, pos) == pytest.approx(brute)
    assert auroc(np.array([1.0, 2.0]), np.array([True, True])) is None
    assert auroc(np.array([3.0, 1.0]), np.array([True, False])) == 1.0


def test_analyze_ranks_starts_by_energy_and_reports_its_auroc():
    model = tiny_model("prefix_sums", "ebm", "conv1d", seed=2)
    t = get_task("prefix_sums")
    x, y = t.generate(8, 6, 1)
    out = analyze(model, t, x, y, iters=3, starts=3, seed=0)
    b = out["breadth"]
    assert b["verifier"] == "energy" and [p["starts"] for p in b["points"]] == [1, 2, 3]
    assert b["verifier_n"] == 18
    assert b["verifier_auroc"] is None or 0.0 <= b["verifier_auroc"] <= 1.0
    starts = out["path_independence"]["starts"]
    assert [s["start"] for s in starts][:2] == ["zeros", "noise x0.5"]


def test_hostile_ebm_checkpoints_are_refused():
    model = tiny_model("prefix_sums", "ebm", "conv1d")
    load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))  # unedited, the forgery loads
    cfg = model.config.to_dict()
    for over, message in (({"width": 12}, "shape"), ({"classes": 3}, "shape|classes")):
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums", {"config": json.dumps({**cfg, **over})}))
    with pytest.raises(CheckpointError, match="disagree"):
        load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums", {"family": "recursive"}))
    with torch.no_grad():
        model.head.weight[0, 0, 0] = float("inf")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint_bytes(forge_checkpoint(model, "prefix_sums"))


# --- the shipped checkpoints -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_descent_lowers_the_energy_and_the_truth_sits_below_corruptions(path):
    ck = load_checkpoint(path)
    task = get_task(ck.task)
    size = ck.train_sizes[-1]
    xs, ys = task.generate(size, 24, 4242)
    x, y = task.encode(torch.from_numpy(xs)), torch.from_numpy(ys).long()
    model = ck.model
    states = list(model.stream(x, ck.config.layers, settings=model.settings.updated(tol=0.0)))
    energy = torch.stack([s.series["energy"] for s in states])
    assert float(energy[-1].mean()) < float(energy[0].mean())
    assert (energy[-1] <= energy[0] + 1e-3).float().mean() >= 0.9  # per problem too, nearly always
    e = model.encoder(x).detach()
    truth = model.answer(y)
    gen = torch.Generator().manual_seed(0)
    mask = task.cell_mask(x).unsqueeze(1).bool() if hasattr(task, "cell_mask") else torch.ones_like(truth).bool()
    flip = (torch.rand(truth.shape, generator=gen) < 0.1) & mask
    corrupted = torch.where(flip, 1 - truth, truth)
    with torch.no_grad():
        lower = model.energy(e, truth) < model.energy(e, corrupted)
    assert float(lower.float().mean()) >= 0.8


def test_bad_ebm_options_are_refused_in_one_line(cli, make_checkpoint):
    path = make_checkpoint("prefix_sums", "ebm", "conv1d")
    cases = [
        (("eval", "--checkpoint", path, "--size", 8, "--iters", 2, "--option", "step=-1"), "EBM step must be"),
        (("eval", "--checkpoint", path, "--size", 8, "--iters", 2, "--tol", 0.9), "EBM tol must be"),
        (("memory", "--checkpoint", path, "--size", 8, "--iters", 2, "--modes", "implicit"), "theirs: unrolled,last"),
        (("memory", "--checkpoint", path, "--size", 8, "--iters", 2, "--solver", "anderson"), "ebm has none"),
        (("train", "--family", "ebm", "--corrupt", 2, "--out", "x.safetensors"), "--corrupt must be in 0..1"),
    ]
    for args, needle in cases:
        r = cli(*args)
        assert r.rc == 2 and r.out == "" and r.err.startswith("error: ") and r.err.count("\n") == 1, (args, r.err)
        assert needle in r.err, (needle, r.err)
    ok = cli("memory", "--checkpoint", path, "--size", 8, "--iters", "2,8", "--json")
    rows = json.loads(ok.out)
    assert [(r["mode"], r["iters"]) for r in rows] == [("unrolled", 2), ("unrolled", 8), ("last", 2), ("last", 8)]
