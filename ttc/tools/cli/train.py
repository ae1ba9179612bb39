"""`python -m ttc train`: train a checkpoint (its --help from TrainConfig's field comments)."""

from __future__ import annotations

import json
import os
import shlex
import sys

from models import precision as prec
from models.config import check_arch_dims
from tasks import get_task, optional
from ttc.engine.limits import check_train, check_train_cost
from ttc.tools.cli.common import UsageError, _bool, _int_csv


def field_comments(cls) -> dict[str, str]:
    """A dataclass's fields' trailing comments (`name: type = default  # comment`), by field name: the one place
    an option is described is beside its field."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def add_train(sub) -> None:
    from ttc.engine.train import TrainConfig

    p = sub.add_parser("train", help="train a model and write a checkpoint with its card",
                       description="Every TrainConfig field is an option; its help is the field's comment.")
    d = TrainConfig()
    notes = field_comments(TrainConfig)
    for name, val in vars(d).items():
        flag = "--" + name.replace("_", "-")
        what = notes.get(name, "")
        if isinstance(val, list):
            p.add_argument(flag, type=_int_csv, default=val,
                           help=f"{what}; comma-separated integers (default: {','.join(map(str, val)) or 'none'})")
        elif isinstance(val, bool) or val is None:
            shown = "the family's" if val is None else str(val).lower()
            p.add_argument(flag, type=_bool, default=val, help=f"{what}; true or false (default: {shown})")
        else:
            shown = repr(val) if isinstance(val, str) and val else (val if val != "" else "none")
            p.add_argument(flag, type=type(val), default=val, help=f"{what} (default: {shown})")
    add_family_option_flags(p, set(vars(d)))
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors); an existing one is refused")
    p.add_argument("--force", action="store_true", help="replace an existing --out (never needed for a new path)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)


FAMILY_FLAG = "family_option__"  # argparse dest prefix of a flag a family's own training option declares


def add_family_option_flags(p, taken: set[str]) -> None:
    """A flag for every registered family's own training option (its train_option_defaults, a plugin's too), its
    help naming the family and its default; no central list. A name TrainConfig already has is left to
    --family-options."""
    from models import families

    seen: dict[str, str] = {}
    for fam in families():
        for name, default in fam.train_option_defaults.items():
            if name in taken or name in seen:
                seen.setdefault(name, fam.family_name)
                continue
            seen[name] = fam.family_name
            kind = _bool if isinstance(default, bool) else type(default)
            p.add_argument("--" + name.replace("_", "-"), dest=FAMILY_FLAG + name, type=kind, default=None,
                           help=f"family {fam.family_name}'s own training option (default: {default!r}); the same as "
                                f"--family-options '{{\"{name}\": ...}}'")


def family_options_from_flags(a, family: str) -> str:
    """--family-options with the family's own flags merged in (a flag wins over the same name in the JSON); a flag
    of an option the chosen family does not have is a UsageError naming the family's options."""
    from models import get_family

    given = {k[len(FAMILY_FLAG):]: v for k, v in vars(a).items() if k.startswith(FAMILY_FLAG) and v is not None}
    if not given:
        return a.family_options
    own = get_family(family).train_option_defaults
    foreign = sorted(set(given) - set(own))
    if foreign:
        raise UsageError(f"--{foreign[0].replace('_', '-')} is not an option of family {family}; its own options: "
                         f"{', '.join(sorted(own)) or 'none'}")
    try:
        base = json.loads(a.family_options) if a.family_options.strip() else {}
    except ValueError:
        return a.family_options  # TrainConfig refuses it with its own message
    return json.dumps({**base, **given}) if isinstance(base, dict) else a.family_options


def cmd_train(a) -> int:
    from dataclasses import fields

    from ttc.engine.train import TrainConfig, check_out, train

    a.family_options = family_options_from_flags(a, a.family)
    cfg = TrainConfig(**{f.name: getattr(a, f.name) for f in fields(TrainConfig)})
    check_out(a.out, a.force)
    cfg.training_settings()  # its own options (ranges), then the settings they make (a DEQ's solver by name)
    import torch

    prec.resolve(cfg.precision, "cuda" if torch.cuda.is_available() else "cpu")  # the device train() picks
    check_train(vars(cfg))
    cfg.model_config()  # validates names and ranges before any work
    check_arch_dims(cfg.arch, get_task(cfg.task).spatial_dims, cfg.task)
    if not cfg.sizes:
        raise UsageError("--sizes needs at least one training size")
    for s in cfg.sizes + cfg.eval_sizes:
        get_task(cfg.task).sizes.check(cfg.task, s)
    check_train_cost(get_task(cfg.task), cfg.sizes, cfg.batch, cfg.layers, cfg.width,
                     cfg.validation_size(), cfg.validation_budget(), cfg.val_n)
    variants = [v for v in cfg.variants.split(",") if v]
    known = optional(get_task(cfg.task), "variants")
    bad = [v for v in variants if v not in known]
    if bad:
        raise UsageError(f"--variants {bad} unknown for task {cfg.task}; known: {', '.join(known) or 'none'}")
    command = "python -m ttc " + " ".join(shlex.quote(s) for s in sys.argv[1:])

    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports (progress and validation)

    def show(ev: dict) -> None:
        if a.quiet or not rank0:
            return
        if ev["event"] == "step":
            frac = ev["step"] / ev["steps"]
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r[{bar:<30}] {ev['step']}/{ev['steps']} loss {ev['loss']:.4f} acc {ev['acc']:.3f} "
                             f"{ev['samples_per_s']:.0f} samples/s {ev['elapsed']:.0f}s")
        elif ev["event"] == "val":
            sys.stderr.write(f"\n  val size {ev['val_size']}: best acc {ev['val_acc']:.4f} at iter {ev['val_iter']}\n")
        else:
            sys.stderr.write(f"\n  {ev}\n")
        sys.stderr.flush()

    card = train(cfg, out=a.out, on_event=show, command=command, force=a.force)
    if not rank0:
        return 0
    if not a.quiet:
        sys.stderr.write(f"\nbest val {card['best_val']}\n")
    print(json.dumps({k: card[k] for k in ("train_seconds", "best_val", "steps_run") if k in card}))
    return 0

