"""Property-based fuzzing of checkpoint validation: corrupted bytes end in CheckpointError, nothing else.

Hypothesis feeds `load_checkpoint_bytes` valid tiny checkpoints with bit flips, truncations, edits of
the safetensors header (metadata, config fields, tensor entries), wrong length fields, random JSON
headers and random bytes. Every input must either load as a model with finite weights or be refused
with one CheckpointError whose message is a single short line. The runs are derandomized (CI gives the
same cases every time) and capped by TTC_FUZZ_EXAMPLES (default 1500 per strategy, 9000 in all, about 20 s in all on
a busy 2-core machine); the counts of cases run go to artifacts/fuzz-counts.json.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import forge_checkpoint, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttc.app.catalog import Entry, card_row
from ttc.engine.checkpoint import MAX_HEADER_BYTES, Checkpoint, CheckpointError, load_checkpoint_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = int(os.environ.get("TTC_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MESSAGE_MAX = 600  # a refusal is one readable line, however long the hostile names in the file
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


class Base(bytes):
    """A valid checkpoint's bytes that a failing example names briefly instead of printing them whole."""

    def __new__(cls, data: bytes, name: str):
        obj = super().__new__(cls, data)
        obj.name = name
        return obj

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self)} bytes>"


# one valid checkpoint per family, over all three cores and tasks
BASES = [
    Base(forge_checkpoint(tiny_model("prefix_sums", "recursive", "conv1d"), "prefix_sums"), "prefix_sums recursive"),
    Base(forge_checkpoint(tiny_model("addition", "deq", "transformer"), "addition"), "addition deq transformer"),
    Base(forge_checkpoint(tiny_model("mazes", "explicit", "conv2d"), "mazes"), "mazes explicit"),
]
CONFIG_KEYS = ("family", "arch", "in_channels", "width", "depth", "layers", "heads", "kernel", "norm", "dropout")
META_KEYS = ("format", "task", "family", "arch", "config", "card", "__extra__")
ENTRY_KEYS = ("dtype", "shape", "data_offsets")
CARD_KEYS = ("solver", "train_config", "best_val", "accuracy_table", "train_sizes", "train_seconds", "task", "params")
CARD_FIELDS = ("method", "tol", "solver", "size", "iters", "accuracy", "sizes")
COUNTS: Counter = Counter()


def split(data: bytes) -> tuple[dict, bytes]:
    """(header dict, tensor data) of a valid safetensors byte string."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: object, body: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def check(data: bytes, kind: str) -> Checkpoint | None:
    """The property: a finite-weight model or one short CheckpointError line, never another exception."""
    COUNTS[kind] += 1
    try:
        ck = load_checkpoint_bytes(data)
    except CheckpointError as e:
        msg = str(e)
        assert msg and "\n" not in msg and len(msg) <= MESSAGE_MAX, msg[:2000]
        COUNTS[f"{kind}: refused"] += 1
        return None
    assert isinstance(ck, Checkpoint)
    assert all(torch.isfinite(p).all() for p in ck.model.state_dict().values())
    COUNTS[f"{kind}: loaded"] += 1
    return ck


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["F32", "F16", "I64", "U8", "prefix_sums", "mazes", "deq", "conv1d", "transformer", "explicit"])
)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)
bases = st.sampled_from(BASES)


@pytest.mark.slow
@FUZZ
@given(base=bases, flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips_are_loaded_or_refused(base, flips):
    data = bytearray(base)
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    check(bytes(data), "bit flips")


@FUZZ
@given(base=bases, frac=st.floats(0, 1, exclude_max=True), tail=st.binary(max_size=16))
def test_truncated_files_are_refused(base, frac, tail):
    cut = int(frac * len(base))
    check(base[:cut] + tail if cut + len(tail) < len(base) else base[:cut], "truncations")


@st.composite
def header_edits(draw) -> bytes:
    header, body = split(draw(bases))
    meta = header["__metadata__"]
    config = json.loads(meta["config"])
    names = [k for k in header if k != "__metadata__"]
    config_edited = False
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                [
                    "meta",
                    "drop meta",
                    "config",
                    "drop config",
                    "entry field",
                    "entry",
                    "drop entry",
                    "rename entry",
                    "add entry",
                    "metadata value",
                ]
            )
        )
        if op == "meta":
            meta[draw(st.sampled_from(META_KEYS))] = draw(st.text(max_size=40) | json_values.map(json.dumps))
        elif op == "drop meta":
            meta.pop(draw(st.sampled_from(META_KEYS)), None)
        elif op == "config":
            config_edited = True
            config[draw(st.sampled_from(CONFIG_KEYS))] = draw(json_values | st.integers(0, 2000))
        elif op == "drop config":
            config_edited = True
            config.pop(draw(st.sampled_from(CONFIG_KEYS)), None)
        elif op == "entry field":
            name = draw(st.sampled_from(names))
            if isinstance(header.get(name), dict):
                header[name][draw(st.sampled_from(ENTRY_KEYS))] = draw(
                    json_values | st.lists(st.integers(-2, 5000), max_size=4)
                )
        elif op == "entry":
            header[draw(st.sampled_from(names))] = draw(json_values)
        elif op == "drop entry":
            header.pop(draw(st.sampled_from(names)), None)
        elif op == "rename entry":
            old = draw(st.sampled_from(names))
            if old in header:
                header[draw(st.text(min_size=1, max_size=300))] = header.pop(old)
        elif op == "add entry":
            header[draw(st.text(min_size=1, max_size=40))] = draw(json_values)
        else:
            header["__metadata__"] = draw(json_values)
    if config_edited and isinstance(header.get("__metadata__"), dict) and "config" in header["__metadata__"]:
        header["__metadata__"]["config"] = json.dumps(config, allow_nan=True)
    return join(header, body)


@pytest.mark.slow
@FUZZ
@given(data=header_edits())
def test_header_edits_are_loaded_or_refused(data):
    check(data, "header edits")


fields = st.dictionaries(st.sampled_from(CARD_FIELDS), json_values, max_size=4)
cards = st.dictionaries(st.sampled_from(CARD_KEYS), json_values | fields | st.lists(fields, max_size=3), max_size=5)


@pytest.mark.slow
@FUZZ
@given(base=bases, card=cards)
def test_hostile_model_cards_neither_break_loading_nor_the_zoo_table(base, card):
    """The card is description only: any JSON in it loads the weights and gives a plain zoo-table row."""
    header, body = split(base)
    header["__metadata__"]["card"] = json.dumps(card, allow_nan=True)
    ck = check(join(header, body), "card edits")
    assert ck is not None
    row = card_row(Entry(name="upload", source="upload", version="1", ck=ck))
    assert all(v is None or isinstance(v, (str, int, float)) for v in row.values()), row


@pytest.mark.slow
@FUZZ
@given(header=json_values, body=st.binary(max_size=256), length=st.none() | st.integers(0, 2**64 - 1))
def test_random_json_headers_are_refused(header, body, length):
    check(join(header, body, length), "random JSON headers")


@FUZZ
@given(data=st.binary(max_size=2048) | st.binary(min_size=8, max_size=64).map(lambda b: b"\x10\x00" + b))
def test_random_bytes_are_refused(data):
    check(data, "random bytes")


def test_hostile_headers_found_by_fuzzing_are_refused():
    """The cases fuzzing turned up, kept as plain examples: deep nesting, huge numbers, wrong entry types,
    a config that would build a model of billions of parameters, names of a megabyte."""
    header, body = split(BASES[0])
    meta, name = header["__metadata__"], next(k for k in header if k != "__metadata__")
    cfg = json.loads(meta["config"])
    cases = {
        "nested header": struct.pack("<Q", 200_000) + b"[" * 200_000,
        "5000-digit number": (lambda raw: struct.pack("<Q", len(raw)) + raw)(b'{"a": ' + b"9" * 5000 + b"}"),
        "shape not a list": join({**header, name: {**header[name], "shape": 5}}, body),
        "dtype not a string": join({**header, name: {**header[name], "dtype": [1]}}, body),
        "negative shape": join({**header, name: {**header[name], "shape": [-1, 8]}}, body),
        # 235 million parameters (940 MB) that used to be allocated before the tensors were compared
        "huge config": join(
            {
                **header,
                "__metadata__": {**meta, "config": json.dumps({**cfg, "width": 1024, "depth": 16, "kernel": 7})},
            },
            body,
        ),
        "config digits": join(
            {**header, "__metadata__": {**meta, "config": '{"in_channels": ' + "1" * 5000 + "}"}}, body
        ),
        "megabyte name": join({**header, "x" * (MAX_HEADER_BYTES - 10_000): header[name]}, body),
    }
    # a card that names an unhashable solver method must load (the card is advice, not structure)
    load_checkpoint_bytes(join({**header, "__metadata__": {**meta, "card": '{"solver": {"method": [1]}}'}}, body))
    for kind, data in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint_bytes(data)
        assert "\n" not in str(e.value) and len(str(e.value)) <= MESSAGE_MAX, (kind, str(e.value)[:1000])
    # the card is descriptive only: an unreadable one is dropped, the weights still load
    assert load_checkpoint_bytes(join({**header, "__metadata__": {**meta, "card": "[" * 100_000}}, body)).card == {}


def test_zz_record_how_many_cases_ran():
    """Runs last in this file: every strategy ran its cases, and the counts are kept for the record."""
    kinds = ("bit flips", "truncations", "header edits", "card edits", "random JSON headers", "random bytes")
    ran = {k: COUNTS[k] for k in kinds}
    if not all(ran.values()):
        pytest.skip("run with the whole file to count the cases")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-counts.json").write_text(json.dumps(dict(sorted(COUNTS.items())), indent=1) + "\n")
    assert all(n >= min(EXAMPLES, 50) for n in ran.values()), ran
    assert COUNTS["header edits: refused"] and COUNTS["bit flips: refused"]
