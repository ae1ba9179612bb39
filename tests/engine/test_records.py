"""Probe records gathered into columns (ttc.engine.records.Columns): what trace, analyze, evaluate and the report
keep of a run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_model

from tasks import get_task
from ttc.engine.checkpoint import load_checkpoint
from ttc.engine.evaluate import evaluate
from ttc.engine.probe import probe
from ttc.engine.records import Columns
from ttc.engine.runtime import project_root


def _records(iters: int = 6, n: int = 5):
    task = get_task("prefix_sums")
    model = tiny_model("prefix_sums", "recursive", "conv1d")
    x, y = task.generate(8, n, seed=3)
    return list(probe(model, task, x, y, iters)), (model, task, x, y)


def test_columns_keep_fields_derived_values_and_skip_none():
    records, _ = _records()
    cols = Columns({**dict.fromkeys(("k", "accuracy", "correct")), "right": lambda r: int(r.correct.sum()),
                    "never": lambda r: None})
    kept = list(cols.collect(records))
    assert kept == records and cols.count == len(records) and cols.last is records[-1]
    assert cols.array("k", np.int64).tolist() == [r.k for r in records]
    assert cols.array("accuracy").tolist() == [r.accuracy for r in records]
    assert cols.stack("correct").shape == (len(records), 5)
    assert cols.array("right").tolist() == [int(r.correct.sum()) for r in records]
    assert cols.cols["never"] == [] and cols.stack("never", (0, 5), bool).shape == (0, 5)
    assert cols.series is None


def test_columns_keep_series_by_name():
    records, _ = _records()
    for i, r in enumerate(records):
        r.series = {"a": np.full(5, i, np.float32)} if i % 2 else {"b": np.zeros(5)}
    cols = Columns(("k",), series=True)
    for r in records:
        cols.add(r)
    assert len(cols.series["a"]) == len(records) // 2 and len(cols.series["b"]) == (len(records) + 1) // 2


def test_evaluate_matches_the_probe_records_it_merges():
    """evaluate over several batches: accuracy, NFE and each problem's solved-from iteration as probe shows them
    (a trained model at twice its training size, so that problems are solved at different iterations)."""
    model = load_checkpoint(project_root() / "checkpoints" / "prefix_sums-recursive.safetensors").model
    task = get_task("prefix_sums")
    x, y = task.generate(64, 7, seed=4)
    records = list(probe(model, task, x, y, 40))
    curve = evaluate(model, task, x, y, 40, batch=3)
    assert curve.accuracy == pytest.approx([r.accuracy for r in records]) and curve.nfe == [r.nfe for r in records]
    right = np.stack([r.correct for r in records])  # (K, n)
    assert right[-1].any() and not right[0].all()  # the comparison below is not vacuous
    for i, at in enumerate(curve.solved_at):
        if not right[-1, i]:
            assert at is None
        else:
            wrong_at = np.flatnonzero(~right[:, i])
            assert at == (int(wrong_at[-1]) + 2 if wrong_at.size else 1)
