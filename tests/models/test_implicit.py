"""Backward modes: the implicit gradient is exact, jfb approximates it, unrolled backprops every step."""

from __future__ import annotations

import pytest
import torch

from models.implicit import deq_forward, jacobian_penalty
from models.solvers import SolverError

pytestmark = pytest.mark.usefixtures("one_thread")
METHODS = ["fixed_point", "anderson", "broyden"]


def problem(B: int = 3, D: int = 6, Din: int = 4, scale: float = 0.7, seed: int = 0):
    """A small contractive f(z) = tanh(z W^T + x U^T + b) in float64; its parameters are leaves."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, D, generator=g, dtype=torch.float64)
    W = (scale * W / torch.linalg.matrix_norm(W, 2)).requires_grad_()
    U = torch.randn(D, Din, generator=g, dtype=torch.float64).requires_grad_()
    b = (0.1 * torch.randn(D, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.randn(B, Din, generator=g, dtype=torch.float64).requires_grad_()
    c = torch.randn(B, D, generator=g, dtype=torch.float64)  # loss = <c, z*>
    return W, U, b, x, c


def grads(grad: str, W, U, b, x, c, **kw) -> torch.Tensor:
    f = lambda z: torch.tanh(z @ W.T + x @ U.T + b)
    z = deq_forward(f, torch.zeros_like(c), grad=grad, **kw)
    gs = torch.autograd.grad((z * c).sum(), (W, U, b, x))
    return torch.cat([t.flatten() for t in gs])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("b_method", METHODS)
def test_implicit_gradient_matches_unrolled_solve_run_to_convergence(b_method):
    params = problem()
    exact = grads("unrolled", *params, method="fixed_point", tol=1e-15, max_iter=500)
    implicit = grads("implicit", *params, method="anderson", tol=1e-12, max_iter=200,
                     backward={"method": b_method, "tol": 1e-12, "max_iter": 200})
    assert rel_err(implicit, exact) < 1e-6


def test_implicit_gradient_passes_gradcheck():
    W, U, b, x, c = problem(B=2, D=4, Din=3)

    def fn(W, x):
        f = lambda z: torch.tanh(z @ W.T + x @ U.T + b)
        return deq_forward(f, torch.zeros(2, 4, dtype=torch.float64), grad="implicit", method="anderson",
                           tol=1e-13, max_iter=200, backward={"tol": 1e-13})

    assert torch.autograd.gradcheck(fn, (W.detach().requires_grad_(), x.detach().requires_grad_()),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


def test_jfb_gradient_points_the_same_way_as_the_implicit_one(record_property):
    params = problem()
    implicit = grads("implicit", *params, tol=1e-12, max_iter=200)
    jfb = grads("jfb", *params, tol=1e-12, max_iter=200)
    cos = float(jfb @ implicit / (jfb.norm() * implicit.norm()))
    record_property("jfb_cosine_to_implicit", cos)  # 0.987 for this f (||J|| <= 0.7)
    assert 0.5 < cos < 1.0


def test_unrolled_gradient_at_few_steps_differs_and_converges_with_more():
    params = problem(scale=0.9)
    exact = grads("implicit", *params, tol=1e-12, max_iter=300)
    errs = [rel_err(grads("unrolled", *params, method="fixed_point", tol=0.0, max_iter=k), exact) for k in (3, 10, 60)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3, errs


def test_backward_solver_has_its_own_tolerance_and_budget_and_reports_stats():
    W, U, b, x, c = problem()
    f = lambda z: torch.tanh(z @ W.T + x @ U.T + b)
    info: dict = {}
    z = deq_forward(f, torch.zeros_like(c), grad="implicit", method="anderson", tol=1e-10, max_iter=100,
                    backward={"method": "fixed_point", "max_iter": 3}, info=info)
    assert "backward" not in info and bool(info["forward"].converged.all())
    (z * c).sum().backward()
    assert info["backward"].steps == 3 and info["backward"].extra["method"] == "fixed_point"


def test_no_grad_mode_returns_the_solvers_fixed_point_without_a_graph():
    W, U, b, x, c = problem()
    f = lambda z: torch.tanh(z @ W.T + x @ U.T + b)
    for grad in ("implicit", "jfb", "unrolled"):
        with torch.no_grad():
            z = deq_forward(f, torch.zeros_like(c), grad=grad, tol=1e-10, max_iter=100)
        assert not z.requires_grad
        torch.testing.assert_close(f(z), z, rtol=1e-9, atol=1e-9)


def test_unknown_backward_mode_and_bad_backward_options_raise():
    W, U, b, x, c = problem()
    f = lambda z: torch.tanh(z @ W.T + x @ U.T + b)
    with pytest.raises(SolverError, match="known modes: implicit, jfb, unrolled"):
        deq_forward(f, torch.zeros_like(c), grad="neumann")
    with pytest.raises(SolverError, match="unknown options"):
        deq_forward(f, torch.zeros_like(c), grad="implicit", backward={"method": "fixed_point", "m": 3})


def test_jacobian_penalty_is_an_unbiased_estimate_of_the_frobenius_norm():
    A = torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = lambda z: z @ A.T  # J = A for every sample
    z = torch.zeros(4, 5, dtype=torch.float64)
    est = jacobian_penalty(f, z, torch.Generator().manual_seed(1), probes=2000)
    truth = float(A.pow(2).sum()) / 5
    assert abs(float(est) - truth) / truth < 0.05
    again = jacobian_penalty(f, z, torch.Generator().manual_seed(1), probes=2000)
    assert float(again) == float(est)  # the probes come from the generator only


def test_deq_training_loss_takes_its_settings_as_an_argument_and_leaves_the_model_unchanged():
    """The family's training loss gets the backward mode and Jacobian weight through TrainStep; the model's
    own settings (shared by every user of a loaded checkpoint) never change, and stats come back in `info`."""
    from conftest import tiny_model
    from torch.nn import functional as F

    from models import DEQSettings, TrainStep

    model = tiny_model("prefix_sums", "deq", "conv1d", norm=True).train()
    before = model.settings
    x = torch.zeros(2, model.config.in_channels, 8)
    x[:, 0, ::2] = 1
    y = torch.zeros(2, 8, dtype=torch.long)
    ce = lambda logits: F.cross_entropy(logits, y)  # noqa: E731
    for grad in ("implicit", "jfb", "unrolled"):
        s = DEQSettings(method="anderson", tol=1e-4, backward=grad)
        model.zero_grad()
        plain, _ = model.training_loss(x, ce, TrainStep(layers=6, n=0, k=6, alpha=0, settings=s))
        reg, _ = model.training_loss(x, ce, TrainStep(layers=6, n=0, k=6, alpha=0, settings=s, extras={"jac_reg": 0.5},
                                                      generator=torch.Generator().manual_seed(0)))
        assert reg.requires_grad and float(reg) > float(plain)  # the Hutchinson term is positive
        reg.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        info: dict = {}
        model(x, 6, settings=s, info=info)
        assert info["forward"].nfe <= 6
    assert model.settings is before
