"""Reliability: hostile checkpoints, junk arguments and links, run-cost caps, upload limits, diverging models.

Every hostile checkpoint of the issue is refused with one clear CheckpointError line, by the CLI (exit 2)
and by the dashboard's upload (st.error, the app going on); every CLI argument and URL parameter is checked;
a run above the cost cap is refused naming the cap and what lowers the cost; diverging models (a DEQ with
over-relaxed damping or perturbed weights, a recursive model far past its training depth) show their diverged
samples in the metrics and the residual chart, and NaN/inf never breaks a figure.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest
import torch
from conftest import ROOT, forge_checkpoint, tiny_model
from safetensors.torch import save as st_save
from streamlit.testing.v1 import AppTest

from models import DEQSettings, ModelConfig, build_model
from tasks import get_task, save_npz
from ttc.app import export, plots, settings
from ttc.app.catalog import Entry
from ttc.app.settings import QUERY_KEYS, RunSettings, sanitize
from ttc.app.trace import Trace, compute_trace
from ttc.engine import limits
from ttc.engine.checkpoint import MAX_FILE_BYTES, Checkpoint, CheckpointError, load_checkpoint_bytes, save_checkpoint
from ttc.engine.evaluate import evaluate
from ttc.engine.probe import probe
from ttc.tools import cli as ttc_cli

pytestmark = pytest.mark.usefixtures("one_thread")

APP = str(ROOT / "app.py")
TINY_REC = dict(family="recursive", arch="conv1d", in_channels=1, width=8, depth=1, layers=6)
TINY_DEQ = dict(family="deq", arch="conv1d", in_channels=1, width=8, depth=1, layers=6, norm=False)


def assert_refused(r, *needles: str) -> None:
    """Exit status 2, nothing on stdout, one stderr line `error: ...` naming the problem, no traceback."""
    assert r.rc == 2, (r.rc, r.err)
    assert r.out == "" and "Traceback" not in r.err
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    for needle in needles:
        assert needle in r.err, (needle, r.err)


def strict_json(text: str) -> object:
    """Parse JSON as a browser does: NaN and Infinity tokens are an error."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# ---- hostile checkpoints --------------------------------------------------------------------------------


def _ps_model(seed: int = 0):
    return tiny_model("prefix_sums", "recursive", "conv1d", seed=seed)


def _good() -> bytes:
    return forge_checkpoint(_ps_model(), "prefix_sums")


def _nan_weights() -> bytes:
    model = _ps_model()
    with torch.no_grad():
        model.block.mix.weight[0, 0, 0] = float("nan")
    return forge_checkpoint(model, "prefix_sums")


def _torch_save_zip() -> bytes:
    buf = io.BytesIO()
    torch.save(_ps_model().state_dict(), buf)
    return buf.getvalue()


def _meta(**over) -> bytes:
    """The tiny checkpoint with its metadata edited (None drops a key)."""
    return forge_checkpoint(_ps_model(), "prefix_sums", over)


def _config(**over) -> str:
    return json.dumps({**_ps_model().config.to_dict(), **over})


# name -> (bytes of the file, what the one refusal line must say)
HOSTILE = {
    "truncated body": (lambda: _good()[: len(_good()) // 2], "truncated or corrupt"),
    "truncated header": (lambda: _good()[:200], "file truncated"),
    "random bytes": (lambda: np.random.default_rng(0).bytes(4096), "not a TTC checkpoint"),
    "pickle renamed": (lambda: pickle.dumps({"weights": [1.0, 2.0]}), "Python pickle"),
    "torch.save zip renamed": (_torch_save_zip, "zip archive"),
    "over-large header": (lambda: struct.pack("<Q", 2**31) + _good()[8:], "exceeds the 1048576-byte limit"),
    "no metadata": (
        lambda: st_save({k: v.contiguous() for k, v in _ps_model().state_dict().items()}),
        "metadata is missing",
    ),
    "missing task": (lambda: forge_checkpoint(_ps_model(), "prefix_sums", {"task": None}), "missing ['task']"),
    "unknown task": (lambda: _meta(task="chess"), "task 'chess' is unknown"),
    "wrong family": (
        lambda: forge_checkpoint(_ps_model(), "prefix_sums", {"family": "lstm", "config": _config(family="lstm")}),
        "unknown family 'lstm'",
    ),
    "config not JSON": (lambda: _meta(config="{width: 8"), "not valid JSON"),
    "shape mismatch": (
        lambda: forge_checkpoint(_ps_model(), "prefix_sums", {"config": _config(width=16)}),
        "the config needs [16, 16, 3]",
    ),
    "NaN weights": (_nan_weights, "NaN or infinite"),
    "metadata of another task": (
        lambda: forge_checkpoint(_ps_model(), "prefix_sums", {"task": "mazes"}),
        "does not fit task mazes",
    ),
    "empty file": (lambda: b"", "too short"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_checkpoint_is_refused_with_one_clear_message(case):
    make, needle = HOSTILE[case]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_bytes(make())
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and len(msg) < 500, msg


@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_cli_refuses_a_hostile_checkpoint_in_one_line(cli, tmp_path, case):
    make, needle = HOSTILE[case]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(make())
    assert_refused(cli("eval", "--checkpoint", path, "--size", 8, "--iters", 2), needle)


def test_the_cli_refuses_files_that_are_too_large_or_not_safetensors(cli, tmp_path):
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:  # sparse: the size is checked before anything is read
        f.truncate(MAX_FILE_BYTES + 1)
    assert_refused(cli("eval", "--checkpoint", big, "--size", 8, "--iters", 2), f"exceeds the {MAX_FILE_BYTES}-byte")
    pt = tmp_path / "model.pt"
    pt.write_bytes(_torch_save_zip())
    assert_refused(cli("eval", "--checkpoint", pt, "--size", 8, "--iters", 2), "must be a .safetensors file")
    with pytest.raises(CheckpointError, match="exceeds the 67108864-byte limit"):
        load_checkpoint_bytes(bytes(MAX_FILE_BYTES + 1))


def test_the_cli_refuses_a_checkpoint_for_another_task_than_the_data(cli, tmp_path):
    maze = save_checkpoint(tmp_path / "maze.safetensors", tiny_model("mazes", "recursive", "conv2d"), "mazes")
    data = tmp_path / "ps.npz"
    save_npz(data, "prefix_sums", 8, *get_task("prefix_sums").generate(8, 3, seed=0))
    assert_refused(
        cli("eval", "--checkpoint", maze, "--data", data, "--iters", 2),
        "checkpoint is for task 'mazes' but the data is 'prefix_sums'",
    )


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """Dashboard checkpoints: a well-behaved recursive model, and two that diverge (finite, valid weights)."""
    folder = tmp_path_factory.mktemp("ckpts")
    save_checkpoint(folder / "prefix_sums-recursive.safetensors", build_model(ModelConfig(**TINY_REC)), "prefix_sums")
    save_checkpoint(folder / "prefix_sums-recursive-wild.safetensors", scaled(TINY_REC, 3.0), "prefix_sums")
    save_checkpoint(folder / "prefix_sums-deq-perturbed.safetensors", scaled(TINY_DEQ, 2.0), "prefix_sums")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTC_CHECKPOINTS", str(folder))
        yield folder


def app(query: dict | None = None, page: str | None = None) -> AppTest:
    """A fresh session of the app opened on page (Explore by default) with the link's query parameters."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params = dict(query or {})
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_app_refuses_every_hostile_upload_and_keeps_going(ckpt_dir):
    at = app({"size": "8", "n": "4", "budget": "3"}, "views/checkpoints.py")
    for case, (make, needle) in HOSTILE.items():
        if case == "empty file":
            continue  # the browser's uploader sends no empty file
        at.file_uploader(key="upload").set_value((f"{case}.safetensors", make(), "application/octet-stream")).run()
        assert not at.exception, (case, [e.value for e in at.exception])
        assert len(at.error) == 1, case
        msg = at.error[0].value
        assert msg.startswith(f"{case}.safetensors was refused:") and needle in msg and "\n" not in msg, msg
    # and the session is still whole: a good upload is accepted and runs on Explore
    at.file_uploader(key="upload").set_value(("mine.safetensors", _good(), "application/octet-stream")).run()
    assert not at.exception and "mine.safetensors is valid" in at.success[0].value
    at.switch_page("views/explore.py").run()
    at.selectbox(key="w_checkpoint").set_value("mine").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["NFE"] == "3"


def test_an_upload_with_a_junk_model_card_is_listed_without_breaking_the_page(ckpt_dir):
    card = {
        "best_val": [1, 2],
        "accuracy_table": "x" * 50,
        "train_sizes": 7,
        "train_seconds": {"a": 1},
        "solver": {"method": "anderson", "tol": "fast"},
        "train_config": [None],
    }
    data = forge_checkpoint(_ps_model(), "prefix_sums", {"card": json.dumps(card)})
    at = app(page="views/checkpoints.py")
    at.file_uploader(key="upload").set_value(("junkcard.safetensors", data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "junkcard.safetensors is valid" in at.success[0].value
    assert "junkcard" in list(at.dataframe[0].value["name"])


# ---- uploads: size-limited, per session --------------------------------------------------------------


def test_uploads_are_size_limited_by_the_loader_and_the_server_config():
    assert limits.MAX_UPLOAD_BYTES == MAX_FILE_BYTES == 64 * 2**20
    config = (ROOT / ".streamlit" / "config.toml").read_text()  # read by `streamlit run` from the root
    (mb,) = re.findall(r"^maxUploadSize\s*=\s*(\d+)", config, flags=re.M)
    assert int(mb) * 2**20 == limits.MAX_UPLOAD_BYTES


def test_an_upload_is_held_only_in_its_own_session(ckpt_dir):
    mine = app(page="views/checkpoints.py")
    mine.file_uploader(key="upload").set_value(("secret.safetensors", _good(), "application/octet-stream")).run()
    assert "secret" in list(mine.dataframe[0].value["name"])
    other = app(page="views/checkpoints.py")  # another browser session on the same server process
    assert "secret" not in list(other.dataframe[0].value["name"])
    other = app({"checkpoint": "secret"})  # nor can a link reach it
    assert any("'secret' is not available" in w.value for w in other.warning)


def test_a_session_holds_at_most_the_capped_number_of_uploads(ckpt_dir):
    at = app(page="views/checkpoints.py")
    for i in range(limits.MAX_SESSION_UPLOADS + 1):
        data = forge_checkpoint(_ps_model(seed=i), "prefix_sums")
        at.file_uploader(key="upload").set_value((f"m{i}.safetensors", data, "application/octet-stream")).run()
        assert not at.exception
    assert f"holds {limits.MAX_SESSION_UPLOADS} uploaded checkpoints" in at.error[0].value
    names = list(at.dataframe[0].value["name"])
    assert sum(n.startswith("m") for n in names) == limits.MAX_SESSION_UPLOADS


# ---- every CLI argument checked ------------------------------------------------------------------------


def _train(*args):
    return ["train", "--out", "/nonexistent/t.safetensors", "--steps", 1, "--quiet", "--sizes", 8, *args]


# junk or out-of-range values for the arguments test_cli.py does not already cover, each one line, exit 2
BAD_ARGS = {
    "train --batch 0": (_train("--batch", 0), "--batch must be in 1..4096"),
    "train --batch junk": (_train("--batch", "x"), "--batch"),
    "train --steps -1": (_train("--steps", -1), "--steps must be in"),
    "train --lr nan": (_train("--lr", "nan"), "--lr must be in (0, 10]"),
    "train --lr 0": (_train("--lr", 0), "--lr must be in (0, 10]"),
    "train --width 3": (_train("--width", 3), "width must be an integer in 4..1024"),
    "train --depth 99": (_train("--depth", 99), "depth must be an integer in 1..16"),
    "train --layers 0": (_train("--layers", 0), "layers must be an integer in 1..256"),
    "train --heads 3": (_train("--arch", "transformer", "--heads", 3), "divisible by heads 3"),
    "train --norm maybe": (_train("--norm", "maybe"), "must be true or false"),
    "train --sizes a,b": (_train("--sizes", "a,b"), "comma-separated integers"),
    "train --sizes empty": (_train("--sizes", ","), "at least one training size"),
    "train --sizes 99999": (_train("--sizes", 99999), "size 99999 out of range"),
    "train --time-budget inf": (_train("--time-budget", "inf"), "--time-budget must be in"),
    "train --warmup -5": (_train("--warmup", -5), "--warmup must be in"),
    "train --weight-decay nan": (_train("--weight-decay", "nan"), "--weight-decay"),
    "train --clip -1": (_train("--clip", -1), "--clip must be in"),
    "train --alpha 7": (_train("--alpha", 7), "--alpha must be in 0..1"),
    "train --seed -1": (_train("--seed", -1), "--seed must be in"),
    "train --val-size -4": (_train("--val-size", -4), "--val-size must be in"),
    "train --val-iters -1": (_train("--val-iters", -1), "--val-iters must be in"),
    "train --val-every 0": (_train("--val-every", 0), "--val-every must be in"),
    "train --val-n 0": (_train("--val-n", 0), "--val-n must be in"),
    "train --solver magic": (_train("--family", "deq", "--solver", "magic"), "unknown solver 'magic'"),
    "train --tol 5": (_train("--family", "deq", "--tol", 5), "--tol must be in (0, 1]"),
    "train --grad magic": (_train("--family", "deq", "--grad", "magic"), "unknown backward mode 'magic'"),
    "train --jac-reg -1": (_train("--family", "deq", "--jac-reg", -1), "--jac-reg must be in"),
    "train --eval-iters 0": (_train("--eval-sizes", 8, "--eval-iters", 0), "--eval-iters values must be in"),
    "train --eval-n 0": (_train("--eval-n", 0), "--eval-n must be in"),
    "train --threads -2": (_train("--threads", -2), "--threads must be in 0..256"),
    "train --family lstm": (_train("--family", "lstm"), "unknown family 'lstm'"),
    "train step over the cost cap": (
        _train("--batch", 4096, "--sizes", 4096, "--width", 1024, "--layers", 256),
        "training step cost",
    ),
    "train validation over the cost cap": (
        _train("--val-n", 100_000, "--val-size", 4096, "--val-iters", 5000),
        "validation cost",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_a_junk_cli_argument_is_refused_in_one_line(cli, case):
    args, needle = BAD_ARGS[case]
    assert_refused(cli(*args), needle)


def test_memory_and_eval_arguments_are_refused_in_one_line(cli, make_checkpoint):
    deq = make_checkpoint("prefix_sums", "deq", "conv1d", norm=True)
    rec = make_checkpoint("prefix_sums", "recursive", "conv1d")
    cases = [
        (("memory", "--checkpoint", deq, "--size", 8, "--iters", "a"), "--iters must be an integer"),
        (("memory", "--checkpoint", deq, "--size", 8, "--iters", ","), "comma-separated integers"),
        (("memory", "--checkpoint", deq, "--size", 8, "--modes", "x"), "--modes takes"),
        (("memory", "--checkpoint", deq, "--size", 8, "--batch", 0), "--batch must be in 1..1024"),
        (("memory", "--checkpoint", deq, "--size", 8, "--tol", 1), "--tol must be in (0, 1)"),
        (("memory", "--checkpoint", deq, "--size", 8, "--device", "tpu"), "invalid choice"),
        (("memory", "--checkpoint", rec, "--size", 8), "DEQ and EBM checkpoints"),
        (("memory", "--checkpoint", deq, "--size", 99999), "size 99999 out of range"),
        (("eval", "--checkpoint", rec, "--size", 8, "--iters", 2, "--batch", 0), "--batch must be in"),
        (("eval", "--checkpoint", rec, "--size", 8, "--iters", 2, "--seed", -1), "--seed must be in"),
        (("eval", "--checkpoint", rec, "--size", 8, "--iters", 2, "--device", "tpu"), "invalid choice"),
        (("eval", "--checkpoint", deq, "--size", 8, "--iters", 2, "--solver", "newton"), "invalid choice"),
        (("eval", "--checkpoint", deq, "--size", 8, "--iters", 2, "--tol", "nan"), "--tol must be in (0, 1)"),
        (("eval", "--checkpoint", rec, "--size", 8, "--iters", 2, "--data", ROOT), "does not exist"),
        (("eval", "--checkpoint", ROOT, "--size", 8, "--iters", 2), "does not exist"),
        (("data", "--task", "addition", "--size", 4, "--out", ROOT), "cannot write"),
        (("data", "--task", "addition", "--size", 4, "--seed", 2**64, "--out", "x.npz"), "--seed must be in"),
        (("eval", "--checkpoint", rec), "required"),
        (("--no-such-flag",), "error"),
    ]
    for args, needle in cases:
        assert_refused(cli(*args), needle)
    TRIED["junk eval/memory/data arguments"] = len(cases)


TRIED: dict[str, int] = {}


# ---- run cost: one definition, a documented cap ----------------------------------------------------------


def test_the_cli_and_the_dashboard_share_one_cost_definition():
    task = get_task("mazes")
    assert ttc_cli.run_cost is limits.run_cost and ttc_cli.MAX_COST == limits.MAX_COST
    assert limits.run_cost(task, 9, 10, 7, 16) == 10 * 11 * 11 * 7 * 16 * 16  # problems x cells x iters x width^2
    entry = Entry(
        name="m",
        source="file",
        version="1",
        ck=Checkpoint(
            model=tiny_model("mazes", "recursive", "conv2d"),
            task="mazes",
            config=tiny_model("mazes", "recursive", "conv2d").config,
        ),
    )
    assert settings.iter_cost(entry, "mazes", 9, 10) == limits.run_cost(task, 9, 10, 1, 8)
    assert settings.ITER_COST_MAX == limits.LIVE_ITER_COST and settings.BUDGET_MAX == limits.LIVE_BUDGET_MAX
    # a whole dashboard run stays under the CLI's cap by construction
    assert limits.LIVE_ITER_COST * limits.LIVE_BUDGET_MAX <= limits.MAX_COST
    n = settings.max_n(entry, "mazes", 401)
    assert limits.run_cost(task, 401, n, 1, 8) <= limits.LIVE_ITER_COST < limits.run_cost(task, 401, n + 1, 1, 8)


def test_a_run_over_the_cap_is_refused_before_any_work(cli, make_checkpoint, monkeypatch):
    ckpt = make_checkpoint("prefix_sums", "recursive", "conv1d", width=256)

    def no_work(*a, **k):
        raise AssertionError("problems were generated for a run over the cap")

    monkeypatch.setattr(type(get_task("prefix_sums")), "generate", no_work)
    r = cli("eval", "--checkpoint", ckpt, "--size", 4096, "--n", 60_000, "--iters", 5000)
    assert_refused(r, "exceeds the cap 2e+12", "lower --n, --size or --iters")
    deq = make_checkpoint("prefix_sums", "deq", "conv1d", width=256)
    r = cli("memory", "--checkpoint", deq, "--size", 4096, "--batch", 1024, "--iters", "5000,5000")
    assert_refused(r, "exceeds the cap 2e+12", "lower --batch, --size, --iters or --modes")


def test_the_cost_cap_is_the_max_cost_option(cli, make_checkpoint):
    # a long run (a maze of side 201 at thousands of iterations) is allowed on purpose by raising --max-cost; a
    # lower one refuses a run the default would take; the cap the refusal names is the one in force
    ckpt = make_checkpoint("prefix_sums", "recursive", "conv1d", width=8)
    cost = limits.run_cost(get_task("prefix_sums"), 32, 10, 5, 8)
    args = ("--checkpoint", ckpt, "--size", 32, "--n", 10, "--iters", 5)
    r = cli("eval", *args, "--max-cost", f"{cost / 2:g}")
    assert_refused(r, f"exceeds the cap {cost / 2:.2g}", "raise --max-cost")
    r = cli("measure", "--checkpoint", ckpt, "--sizes", 32, "--iters", 5, "--n", 10, "--max-cost", f"{cost / 2:g}")
    assert_refused(r, "exceeds the cap", "raise --max-cost")
    r = cli("eval", *args, "--max-cost", f"{cost:g}", "--json", "--quiet")
    assert r.rc == 0, r.err
    assert len(json.loads(r.out)["accuracy"]) == 5
    for bad in ("0", "-1", "nan", "inf", "lots"):
        assert_refused(cli("eval", *args, "--max-cost", bad), "--max-cost")


@pytest.mark.slow
def test_a_link_asking_for_too_costly_a_run_is_clamped_with_a_message(ckpt_dir):
    at = app({"size": "4096", "n": "1000", "budget": "2"})
    warn = " ".join(w.value for w in at.warning)
    assert "of your 1000 problems" in warn and "python -m ttc eval" in warn
    used = int(warn.split("This run uses ")[1].split(" of")[0])
    assert limits.run_cost(get_task("prefix_sums"), 4096, used, 1, 8) <= limits.LIVE_ITER_COST
    assert at.number_input(key="w_n").value == 1000  # the user's n is kept: the cut is this run's only


# ---- every URL query parameter checked -----------------------------------------------------------------

JUNK = {
    "task": "<img src=x onerror=alert(1)>",
    "checkpoint": "../" * 300,
    "size": "1e400",
    "n": "-0",
    "budget": "0x10",
    "seed": "9" * 400,
    "solver": "__import__('os')",
    "tol": "-inf",
    "damping": "NaN",
    "step": "1e999",
    "momentum": "-1",
    "noise": "None",
    "precision": "fp8; DROP TABLE",
    "difficulty": "1e400",
}
TINY_EBM = dict(family="ebm", arch="conv1d", in_channels=1, width=8, depth=1, layers=6)
EBM_KEYS = ("step", "momentum", "noise")  # an EBM's own widgets (tol is shared with the DEQ's)


@pytest.mark.parametrize("page", ["views/explore.py", "views/compare.py", "views/memory.py"])
def test_every_query_parameter_with_junk_gives_warnings_never_a_traceback(ckpt_dir, page):
    assert set(JUNK) == set(QUERY_KEYS)
    at = app(JUNK, page)
    assert not at.exception and at.warning
    assert all(len(w.value) < 300 and "Traceback" not in w.value for w in at.warning)


def test_junk_query_values_each_fall_back_with_a_warning():
    entries = [
        Entry(
            name="d",
            source="file",
            version="1",
            ck=Checkpoint(model=scaled(TINY_DEQ, 1.0), task="prefix_sums", config=ModelConfig(**TINY_DEQ)),
        )
    ]
    entries.append(Entry(name="e", source="file", version="1",
                         ck=Checkpoint(model=build_model(ModelConfig(**TINY_EBM)), task="prefix_sums",
                                       config=ModelConfig(**TINY_EBM))))
    for key, value in JUNK.items():
        raw = {"checkpoint": "e" if key in EBM_KEYS else "d", "solver": "fixed_point", key: value}
        s, warns = sanitize(raw, entries)
        assert isinstance(s, RunSettings)
        assert any(w.startswith(f"{key} ") for w in warns), (key, warns)


# ---- divergence ----------------------------------------------------------------------------------------


def scaled(cfg: dict, factor: float, seed: int = 0):
    """A tiny model whose block weights are multiplied by factor (finite weights: a valid checkpoint)."""
    model = build_model(ModelConfig(**cfg), seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("block"):
                p.mul_(factor)
    return model.eval()


def _problems(n: int = 12, size: int = 16):
    task = get_task("prefix_sums")
    return (task, *task.generate(size, n, seed=0))


def test_large_damping_pushes_a_deq_to_diverge_and_the_trace_says_so():
    task, x, y = _problems()
    model = scaled(TINY_DEQ, 1.0)
    calm = evaluate(model, task, x, y, 200, settings=DEQSettings(method="fixed_point", options={"tau": 1.0}))
    wild = evaluate(model, task, x, y, 200, settings=DEQSettings(method="fixed_point", options={"tau": 2.0}))
    assert calm.diverged == 0 and calm.converged == 12
    assert wild.diverged == 12 and wild.converged == 0
    assert wild.residual[-1] is None  # no sample left running: no mean, not a number that hides it


def test_a_perturbed_deq_checkpoint_diverges_under_every_solver(tmp_path):
    task, x, y = _problems()
    path = save_checkpoint(tmp_path / "p.safetensors", scaled(TINY_DEQ, 2.0), "prefix_sums")
    model = load_checkpoint_bytes(path.read_bytes()).model  # finite weights: validation lets it in
    for method in ("fixed_point", "anderson", "broyden"):
        recs = list(probe(model, task, x, y, 100, settings=model.settings.updated(method=method)))
        assert recs[-1].diverged.sum() > 0, method
        assert not (recs[-1].diverged & recs[-1].converged).any()


def test_a_recursive_model_far_past_its_training_depth_diverges_and_is_never_counted_twice():
    task, x, y = _problems()
    recs = list(probe(scaled(TINY_REC, 2.0), task, x, y, 1000))  # trained depth 6
    assert recs[5].diverged.sum() == 0 and recs[-1].diverged.sum() == 12
    for r in recs:
        assert not (r.converged & r.diverged).any()
        assert math.isnan(r.residual) or math.isfinite(r.residual)


def _trace_with(residual, diverged, accuracy=None) -> Trace:
    k = len(residual)
    n = 4
    s = RunSettings(task="prefix_sums", checkpoint="x", size=8, n=n, budget=k, seed=0)
    task = get_task("prefix_sums")
    xs, ys = task.generate(8, n, seed=0)
    return Trace(
        settings=s,
        family="deq",
        arch="conv1d",
        params=10,
        memory_kind="cpu_tensor_bytes",
        expected=k,
        k=np.arange(1, k + 1),
        accuracy=np.asarray(accuracy if accuracy is not None else [0.5] * k, dtype=float),
        bit_accuracy=np.full(k, np.nan),
        residual=np.asarray(residual, dtype=float),
        nfe=np.arange(1, k + 1),
        elapsed=np.linspace(0.0, 1.0, k),
        memory_bytes=np.full(k, 1000),
        converged=np.zeros(k, dtype=int),
        diverged=np.asarray(diverged),
        correct=np.zeros((k, n), dtype=bool),
        confidence=np.full((k, n), np.nan, dtype=np.float32),
        inputs=xs,
        targets=ys,
        preds=np.zeros((k, n, 8), dtype=np.uint8),
    )


def test_figures_take_nan_and_inf_without_breaking():
    nasty = _trace_with(
        [1.0, np.inf, np.nan, -np.inf, 0.0, 1e-300, 1e300, np.nan],
        [0, 0, 1, 1, 2, 3, 4, 4],
        accuracy=[0.0, 0.25, np.nan, 0.5, np.inf, 0.5, 0.5, 0.5],
    )
    empty = _trace_with([], [])
    figs = {
        "residual": plots.residual_figure([("nasty", nasty), ("empty", empty)]),
        "accuracy": plots.accuracy_figure([("nasty", nasty)], bits=True),
        "accuracy-time": plots.accuracy_figure([("nasty", nasty)], x="seconds"),
        "memory": plots.memory_figure([("nasty", nasty)]),
        "live": plots.live_figure("nasty", nasty),
        "confidence": plots.confidence_figure(nasty, 0, 3),
        "heat": plots.heatmap_figure(
            "nasty", [8, 16, 32], [np.array([np.nan, np.inf, 0.5]), None, np.array([-np.inf])], 4
        ),
        "memory-modes": plots.memory_modes_figure(
            [
                {"mode": "unrolled", "iters": 10, "saved_bytes": np.nan, "peak_bytes": None},
                {"mode": "unrolled", "iters": 100, "saved_bytes": np.inf, "peak_bytes": None},
                {"mode": "implicit", "iters": 10, "saved_bytes": 5.0, "peak_bytes": None},
            ]
        ),
        "example": plots.example_figure("prefix_sums", nasty.inputs[0], nasty.targets[0], nasty.preds[2, 0], "ex"),
    }
    for name, fig in figs.items():
        spec = strict_json(pio.to_json(fig, validate=True))  # what st.plotly_chart sends the browser
        assert spec["data"], name
        strict_json(export.to_json(fig))
        export.to_csv(fig)
        assert "<html>" in export.to_html(fig).lower()
    residual = figs["residual"]
    assert [d.name for d in residual.data] == ["nasty", "empty", "nasty: diverged samples"]
    ys = residual.data[0].y
    assert ys[0] == 1.0 and all(v is None or (isinstance(v, float) and math.isnan(v)) for v in ys[1:5])
    assert list(residual.data[2].y) == [0, 0, 1, 1, 2, 3, 4, 4] and residual.layout.yaxis2.overlaying == "y"
    assert residual.layout.yaxis.type == "log" and residual.layout.yaxis2.type != "log"


def test_the_app_shows_diverged_samples_and_draws_every_chart(ckpt_dir):
    at = app({"checkpoint": "prefix_sums-recursive-wild", "size": "16", "n": "12", "budget": "300"})
    assert {m.label: m.value for m in at.metric}["Converged / diverged"] == "0 / 12"
    assert any("12 of 12 samples diverged" in w.value for w in at.warning)
    specs = {c.key: strict_json(c.proto.spec) for c in at.get("plotly_chart")}
    residual = specs["final-residual"]
    assert [d["name"] for d in residual["data"]] == [
        "prefix_sums-recursive-wild",
        "prefix_sums-recursive-wild: diverged samples",
        "trained at 6 iterations",  # the training depth's dotted line, named in the legend
    ]
    assert residual["data"][1]["y"][-1] == 12
    assert len(specs["final-accuracy"]["data"][0]["x"]) == 300

    at = app(
        {"checkpoint": "prefix_sums-deq-perturbed", "size": "16", "n": "12", "budget": "100", "solver": "fixed_point"}
    )
    assert {m.label: m.value for m in at.metric}["Converged / diverged"].endswith("/ 12")
    assert any("samples diverged" in w.value for w in at.warning)
    for c in at.get("plotly_chart"):
        strict_json(c.proto.spec)
    at = app({"size": "16", "n": "6", "budget": "40"}, "views/compare.py")  # all three side by side
    names = {d["name"] for d in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert {"prefix_sums-recursive-wild", "prefix_sums-deq-perturbed"} <= names


def test_a_traced_diverging_run_keeps_a_well_formed_eval_json():
    ck = Checkpoint(model=scaled(TINY_REC, 3.0), task="prefix_sums", config=ModelConfig(**TINY_REC))
    s, _ = sanitize(
        {"checkpoint": "w", "size": "16", "n": "8", "budget": "200"},
        [Entry(name="w", source="file", version="1", ck=ck)],
    )
    t = compute_trace(ck, s)
    out = strict_json(json.dumps(t.eval_json()))
    assert out["diverged"][-1] == 8 and out["residual"][-1] is None


def test_zz_count_the_bad_inputs_tried():
    """Kept for the record: how many hostile files and junk values these tests feed."""
    counts = {
        "hostile checkpoints": len(HOSTILE) + 3,
        "junk train arguments": len(BAD_ARGS),
        "junk query parameters": len(JUNK),
        **TRIED,
    }
    out = Path(ROOT / "artifacts")
    out.mkdir(exist_ok=True)
    (out / "reliability-counts.json").write_text(json.dumps(counts, indent=1) + "\n")
    assert all(counts.values())
