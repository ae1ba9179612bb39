"""The parser of `python -m ttc` and its entry point: one `error:` line and exit 2 for bad input."""

from __future__ import annotations

import argparse
import sys

from ttc.tools.cli.analyze import add_analyze
from ttc.tools.cli.bench import add_bench
from ttc.tools.cli.common import USER_ERRORS, Parser
from ttc.tools.cli.data import add_data
from ttc.tools.cli.evaluate import add_eval
from ttc.tools.cli.measure import add_measure
from ttc.tools.cli.memory import add_memory
from ttc.tools.cli.report import add_report
from ttc.tools.cli.train import add_train

COMMANDS = [add_data, add_eval, add_train, add_measure, add_memory, add_analyze, add_bench, add_report]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m ttc", description="TTC Lab: test-time compute for explicit, recursive, DEQ, "
                                                 "energy-based and external-memory models (and plugin families)")
    sub = p.add_subparsers(dest="cmd", required=False, parser_class=Parser, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "cmd", None) is None:  # no command: say which there are (exit 2, as any usage error)
        names = [a for a in parser._subparsers._group_actions[0].choices]
        sys.stderr.write(f"error: a command is required: {', '.join(names)} (python -m ttc COMMAND --help)\n")
        return 2
    try:
        return args.run(args)
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130

