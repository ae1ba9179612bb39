"""The one evaluation (ttc.engine.evaluate): its summary, batching, early stop, and family settings as data."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_model

from models import DEQSettings, NoSettings
from models.config import ConfigError
from tasks import get_task
from ttc.engine.evaluate import accuracy_rows, evaluate, summarize


def test_summary_takes_the_first_best_and_the_last():
    m = summarize([0.1, 0.5, 0.5, 0.3])
    assert (m.best_accuracy, m.best_iter, m.final_accuracy, m.iters) == (0.5, 2, 0.3, 4)
    assert summarize([0.2, 0.9], ks=[10, 20]).best_iter == 20
    with pytest.raises(ValueError):
        summarize([])


def test_batching_does_not_change_the_curve():
    task = get_task("prefix_sums")
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    x, y = task.generate(8, 12, seed=1)
    one, many = evaluate(model, task, x, y, 7, batch=12), evaluate(model, task, x, y, 7, batch=5)
    assert one.accuracy == many.accuracy and one.nfe == many.nfe
    assert one.residual == pytest.approx(many.residual)


def test_early_stop_holds_a_settled_deq_curve_exactly():
    """A DEQ whose samples all converge stops computing; the held accuracy equals what the full run shows."""
    task = get_task("prefix_sums")
    model = tiny_model("prefix_sums", "deq", "conv1d", norm=True)
    x, y = task.generate(8, 10, seed=2)
    s = DEQSettings(method="fixed_point", tol=1e-2)
    full = evaluate(model, task, x, y, 80, settings=s)
    short = evaluate(model, task, x, y, 80, settings=s, early_stop=True)
    assert short.accuracy == full.accuracy
    assert full.held_from is None
    if full.converged + full.diverged == 10:  # settled: the early run stopped before the budget
        assert short.held_from is not None and short.held_from <= 80


def test_accuracy_rows_fixed_depth_family_gets_one_row_per_size():
    task = get_task("prefix_sums")
    model = tiny_model("prefix_sums", "explicit", "conv1d")
    rows = accuracy_rows(model, task, [8, 12], [5, 50], n=6, seed=3)
    assert [(r["size"], r["iters"]) for r in rows] == [(8, 3), (12, 3)]  # its depth, whatever the budgets
    looped = accuracy_rows(tiny_model("prefix_sums", "recursive", "conv1d"), task, [8], [2, 6], n=6, seed=3)
    assert [r["iters"] for r in looped] == [2, 6]
    for r in looped:  # the overthinking check is there whenever 3x the best iteration is inside the budget
        assert ("accuracy_at_3x_best" in r) == (3 * r["best_iter"] <= 6)


def test_family_settings_are_frozen_and_validated():
    s = DEQSettings()
    with pytest.raises(AttributeError):
        s.tol = 1e-2  # frozen: a shared model's settings cannot be changed from outside
    assert s.updated(method="fixed_point", options={"tau": 0.5}).solver_args() == {"method": "fixed_point",
                                                                                   "tol": 1e-4, "tau": 0.5}
    assert s.updated(options={"beta": 0.5}).updated(method="broyden").options == ()  # another method's options go
    with pytest.raises(ValueError, match="unknown options \\['tau'\\] for solver 'anderson'"):
        DEQSettings(options={"tau": 0.5})
    with pytest.raises(ValueError, match="unknown backward mode 'magic'"):
        DEQSettings(backward="magic")
    with pytest.raises(ConfigError, match="unknown run options \\['tol'\\]"):
        NoSettings.from_options(tol=1e-3)


def test_a_mistyped_option_reaches_no_stream_silently():
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    x = np.zeros((2, 8), dtype=np.uint8)
    enc = get_task("prefix_sums").encode(__import__("torch").from_numpy(x))
    with pytest.raises(TypeError):
        next(model.stream(enc, 3, mehtod="anderson"))
    with pytest.raises(ConfigError, match="takes run settings NoSettings, got DEQSettings"):
        next(model.stream(enc, 3, settings=DEQSettings()))
