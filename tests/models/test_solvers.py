"""Solvers: agreement with torchdeq 0.1.0, per-sample stopping and freezing, failure as data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from models import solvers
from models.solvers import Counted, SolverError, iterate, solve

METHODS = ["fixed_point", "anderson", "broyden"]
pytestmark = pytest.mark.usefixtures("one_thread")


def contractive(B: int = 4, D: int = 32, rho: float = 0.97, dtype=torch.float64, seed: int = 0):
    """f(z) = tanh(z W^T + U): W symmetric with spectrum spread over [-0.5, rho], so plain iteration is
    slow (rate ~rho) and acceleration has something to win. Rows are independent problems."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=dtype))
    W = Q @ torch.diag(torch.linspace(-0.5, rho, D, dtype=dtype)) @ Q.T
    U = torch.randn(B, D, generator=g, dtype=dtype)
    return (lambda z: torch.tanh(z @ W.T + U)), torch.zeros(B, D, dtype=dtype)


def mixed_rates(dtype=torch.float64):
    """Three independent problems that converge at very different speeds (contraction 0.1, 0.9, 0.5)."""
    g = torch.Generator().manual_seed(1)
    D = 16
    W = torch.randn(D, D, generator=g, dtype=dtype)
    W = W / torch.linalg.matrix_norm(W, 2)
    c = torch.tensor([0.1, 0.9, 0.5], dtype=dtype)
    U = torch.randn(3, D, generator=g, dtype=dtype)

    def make(rows):
        return lambda z: torch.tanh(c[rows, None] * (z @ W.T) + U[rows])

    return make, torch.zeros(3, D, dtype=dtype)


# --- cross-check against torchdeq 0.1.0 ------------------------------------------------------------

TORCHDEQ = {"fixed_point": "fixed_point_iter", "anderson": "anderson", "broyden": "broyden"}


@pytest.mark.parametrize("method", METHODS)
def test_solvers_reach_torchdeqs_fixed_point(method):
    from torchdeq.solver import get_solver

    f, z0 = contractive()
    z, stats = solve(f, z0, method, tol=1e-9, max_iter=400)
    z_td, _, _ = get_solver(TORCHDEQ[method])(f, z0, max_iter=400, tol=1e-9, stop_mode="rel")
    assert bool(stats.converged.all())
    rel = float((z - z_td).norm() / z_td.norm())
    assert rel < 1e-7, f"{method}: fixed points differ by {rel:.2e}"
    assert float((f(z) - z).norm() / f(z).norm()) < 1e-8


@pytest.mark.parametrize("m,lam", [(5, 1e-4), (5, 1e-8), (10, 1e-4), (3, 0.0)])
@pytest.mark.parametrize("tol", [1e-4, 1e-6])
def test_anderson_needs_no_more_steps_than_torchdeqs(m, lam, tol):
    from torchdeq.solver import get_solver

    f, z0 = contractive()
    theirs = Counted(f)
    z_td, _, _ = get_solver("anderson")(theirs, z0, max_iter=300, tol=tol, stop_mode="rel", m=m, lam=lam)
    ours = Counted(f)
    z, stats = solve(ours, z0, "anderson", tol=tol, max_iter=300, m=m, lam=lam)
    assert ours.calls == stats.nfe
    assert bool(stats.converged.all())
    assert stats.nfe <= theirs.calls, f"ours {stats.nfe} vs torchdeq {theirs.calls} function evaluations"
    assert float((z - z_td).norm() / z_td.norm()) < 20 * tol


def test_anderson_needs_fewer_steps_than_fixed_point():
    f, z0 = contractive(rho=0.99)
    _, fp = solve(f, z0, "fixed_point", tol=1e-6, max_iter=2000)
    _, aa = solve(f, z0, "anderson", tol=1e-6, max_iter=2000)
    assert bool(fp.converged.all()) and bool(aa.converged.all())
    assert aa.nfe * 2 < fp.nfe, (aa.nfe, fp.nfe)


# --- per-sample accounting ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_converged_samples_freeze_while_others_continue(method):
    make, z0 = mixed_rates()
    f = Counted(make(slice(None)))
    steps = list(iterate(f, z0, method, tol=1e-8, max_iter=300))
    last = steps[-1]
    assert f.calls == last.nfe == last.step == len(steps)
    stop = last.stop_step
    assert bool(last.converged.all()) and len(set(stop.tolist())) == 3, stop
    for i in range(3):
        s = int(stop[i])
        frozen = steps[s - 1].z[i]
        for st in steps[s:]:
            assert torch.equal(st.z[i], frozen), f"sample {i} changed after its stop at step {s}"
            assert math.isnan(float(st.rel[i])) and math.isnan(float(st.abs[i]))
        assert all(math.isfinite(float(st.rel[i])) for st in steps[:s])


@pytest.mark.parametrize("method", METHODS)
def test_batched_solve_matches_solving_each_sample_alone(method):
    """Samples stop at different steps; the ones still running must not notice (history, Gram, mixing)."""
    make, z0 = mixed_rates()
    z, stats = solve(make(slice(None)), z0, method, tol=1e-8, max_iter=300)
    for i in range(3):
        zi, si = solve(make(slice(i, i + 1)), z0[i : i + 1], method, tol=1e-8, max_iter=300)
        assert int(si.stop_step[0]) == int(stats.stop_step[i])
        torch.testing.assert_close(zi[0], z[i], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_traces_are_nan_after_each_samples_stop_never_padded(method):
    make, z0 = mixed_rates()
    _, stats = solve(make(slice(None)), z0, method, tol=1e-8, max_iter=300)
    assert stats.rel_trace.shape == stats.abs_trace.shape == (3, stats.steps)
    for i, s in enumerate(stats.stop_step.tolist()):
        assert torch.isfinite(stats.rel_trace[i, :s]).all()
        assert torch.isnan(stats.rel_trace[i, s:]).all() and torch.isnan(stats.abs_trace[i, s:]).all()
        assert float(stats.rel_trace[i, s - 1]) < 1e-8
    assert stats.steps == stats.nfe == int(stats.stop_step.max())


def test_abs_stop_mode_uses_the_absolute_residual():
    f, z0 = contractive()
    _, stats = solve(f, z0, "anderson", tol=1e-6, stop_mode="abs", max_iter=300)
    last = stats.abs_trace[torch.arange(4), stats.stop_step - 1]
    assert bool(stats.converged.all()) and bool((last < 1e-6).all())


def test_tol_zero_runs_the_whole_budget():
    f, z0 = contractive()
    for method in METHODS:
        _, stats = solve(f, z0, method, tol=0.0, max_iter=40)
        assert stats.nfe == 40 and not bool(stats.converged.any()), method


def test_held_bytes_are_the_history():
    f, z0 = contractive(B=2, D=8)
    per = 2 * 8 * 8  # one (B, D) float64 tensor
    fp = list(iterate(f, z0, "fixed_point", tol=0.0, max_iter=6))
    aa = list(iterate(f, z0, "anderson", tol=0.0, max_iter=6, m=3))
    br = list(iterate(f, z0, "broyden", tol=0.0, max_iter=6, m=4))
    assert [s.held_bytes for s in fp] == [0] * 6
    assert [s.held_bytes for s in aa] == [2 * min(k, 3) * per for k in range(1, 7)]
    assert [s.held_bytes for s in br] == [0] + [2 * min(k, 4) * per for k in range(1, 6)]


# --- failure is data --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_nan_producing_sample_is_diverged_and_frozen_not_raised(method):
    make, z0 = mixed_rates()
    f_ok = make(slice(None))
    calls = [0]

    def f(z):  # sample 1 turns NaN from the third call on
        calls[0] += 1
        out = f_ok(z)
        if calls[0] >= 3:
            out = out.clone()
            out[1] = float("nan")
        return out

    z, stats = solve(f, z0, method, tol=1e-8, max_iter=300)
    assert stats.diverged.tolist() == [False, True, False]
    assert stats.converged.tolist() == [True, False, True]
    assert int(stats.stop_step[1]) == 3
    assert torch.isfinite(z).all()
    z_clean, _ = solve(f_ok, z0, method, tol=1e-8, max_iter=300)
    torch.testing.assert_close(z[[0, 2]], z_clean[[0, 2]], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_growing_f_without_fixed_point_never_raises(method):
    f = lambda z: z * z + 1  # no real fixed point; plain iteration explodes
    z, stats = solve(f, torch.zeros(2, 3), method, tol=1e-5, max_iter=200)
    assert not bool(stats.converged.any())
    assert torch.isfinite(z).all()
    if method == "fixed_point":
        assert bool(stats.diverged.all()) and stats.nfe < 20


def test_anderson_singular_least_squares_falls_back_and_is_counted():
    a = torch.tensor([[0.5], [0.9]], dtype=torch.float64)
    # one-dimensional problems: with m = 3 > D and no regularisation the Gram matrix is singular
    z, stats = solve(lambda z: a * z + 1, torch.zeros(2, 1, dtype=torch.float64), "anderson",
                     tol=1e-8, max_iter=100, m=3, lam=0.0)
    assert stats.fallbacks > 0
    assert bool(stats.converged.all())
    torch.testing.assert_close(z, 1 / (1 - a), rtol=1e-6, atol=0)


def test_anderson_weights_fall_back_to_a_plain_step_when_the_gram_is_unusable():
    G = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    G[1, 0, 0] = float("inf")
    alpha, fell = solvers._anderson_weights(G, lam=1e-4, last=2)
    assert fell.tolist() == [False, True]
    assert alpha[1].tolist() == [0.0, 0.0, 1.0]
    torch.testing.assert_close(alpha[0].sum(), torch.tensor(1.0))


# --- arguments --------------------------------------------------------------------------------------


def test_bad_solver_arguments_raise_solver_error_with_the_accepted_values():
    f, z0 = contractive(B=1, D=4)
    with pytest.raises(SolverError, match="known solvers: fixed_point, anderson, broyden"):
        solve(f, z0, "newton")
    with pytest.raises(SolverError, match="unknown options.*accepted: tau"):
        solve(f, z0, "fixed_point", m=5)
    for bad in ({"m": 0}, {"lam": -1.0}, {"beta": 0.0}):
        with pytest.raises(SolverError):
            solve(f, z0, "anderson", **bad)
    with pytest.raises(SolverError, match="tol"):
        solve(f, z0, "anderson", tol=-1.0)
    with pytest.raises(SolverError, match="stop_mode"):
        solve(f, z0, "anderson", stop_mode="max")


def test_unrolled_graph_through_anderson_gives_finite_gradients():
    g = torch.Generator().manual_seed(0)
    W = (0.3 * torch.randn(6, 6, generator=g)).requires_grad_()
    z, _ = solve(lambda z: torch.tanh(z @ W.T + 1), torch.zeros(3, 6), "anderson", tol=1e-5, max_iter=50)
    z.sum().backward()
    assert W.grad is not None and torch.isfinite(W.grad).all()


# --- DEQ models and the eval command ----------------------------------------------------------------


def test_deq_streams_anderson_by_default_and_each_solver_on_request():
    from conftest import tiny_model

    model = tiny_model("prefix_sums", "deq", "conv1d", norm=True)
    assert model.settings.method == "anderson"
    x = torch.zeros(2, model.config.in_channels, 8)
    for method in METHODS:
        with torch.inference_mode():
            states = list(model.stream(x, 12, settings=model.settings.updated(method=method)))
        assert [s.k for s in states] == list(range(1, 13))
        assert all(s.logits.shape == (2, 2, 8) for s in states)


@pytest.mark.parametrize("method", METHODS)
def test_eval_runs_each_solver_on_a_deq_checkpoint(cli, make_checkpoint, method):
    path = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    r = cli("eval", "--checkpoint", path, "--size", 8, "--n", 4, "--iters", 15, "--solver", method,
            "--tol", 1e-3, "--json")
    assert r.rc == 0, r.err
    out = json.loads(r.out)
    assert out["family"] == "deq" and len(out["accuracy"]) == len(out["residual"]) == 15
    assert 1 <= out["nfe"] <= 15
