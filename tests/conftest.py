import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
torch.set_num_threads(int(os.environ.get("TTC_TEST_THREADS", "1")))


# --- shared fixtures for test_tasks, test_models, test_checkpoint, test_cli ---------------------------

import dataclasses  # noqa: E402 (appended section; the lines above set up paths and threads first)

import pytest  # noqa: E402

# every task with the cores that serve it, and a small size for each
TASK_ARCHS = [
    ("prefix_sums", "conv1d"),
    ("prefix_sums", "transformer"),
    ("addition", "conv1d"),
    ("addition", "transformer"),
    ("mazes", "conv2d"),
    ("sudoku", "relational"),
]
SMALL_SIZE = {"prefix_sums": 7, "addition": 6, "mazes": 7, "sudoku": 30}
TINY = dict(width=8, depth=1, layers=3, heads=2)  # tiny models: fast on 2 shared cores


def tiny_model(task: str, family: str, arch: str, seed: int = 0, **over):
    """A randomly initialised tiny model of the family and core for the task."""
    from models import ModelConfig, build_model
    from tasks import get_task

    t = get_task(task)
    cfg = ModelConfig(family=family, arch=arch, in_channels=t.in_channels, classes=t.classes, **{**TINY, **over})
    return build_model(cfg, seed=seed).eval()


@pytest.fixture
def make_checkpoint(tmp_path):
    """make_checkpoint(task, family, arch, seed=0, **config) -> path of a saved tiny random checkpoint."""
    from ttc.engine.checkpoint import save_checkpoint

    def make(task: str, family: str, arch: str, seed: int = 0, **over):
        model = tiny_model(task, family, arch, seed=seed, **over)
        return save_checkpoint(tmp_path / f"{task}-{family}-{arch}-{seed}.safetensors", model, task)

    return make


@dataclasses.dataclass
class CliResult:
    rc: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """cli(*args) -> CliResult: `python -m ttc args...` run in-process (ttc.tools.cli.main), output captured."""
    from ttc.tools.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse: --help and usage errors
            rc = e.code
        out, err = capsys.readouterr()
        return CliResult(rc, out, err)

    return run


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; two spin against each other on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def forge_checkpoint(model, task: str, meta_over: dict | None = None) -> bytes:
    """Safetensors bytes of model's weights with TTC metadata, edited by meta_over (a None value drops a key)."""
    import json

    from safetensors.torch import save

    meta = {
        "format": "ttc-checkpoint/1",
        "task": task,
        "family": model.config.family,
        "arch": model.config.arch,
        "config": json.dumps(model.config.to_dict()),
        "card": "{}",
    }
    meta.update(meta_over or {})
    meta = {k: v for k, v in meta.items() if v is not None}
    return save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata=meta)
