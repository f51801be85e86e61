"""`roofline` command line: one module per subcommand; this one builds the parser and runs the chosen one.

Each subcommand module has `add_arguments(parser)` (flags declared as text) and `run(args) -> str` (flags
converted with `cli.args`, the library called, the answer formatted). Every error the library can detect
(unknown id, impossible value, a dtype the hardware lacks) is printed as one line
`roofline: error: FIELD: what and the fix` with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pydantic import ValidationError

from ..errors import SpecError, validation_message

# the subcommands, each the module `roofline.cli.<name>`, in the order `roofline --help` lists them
SUBCOMMANDS = ("predict", "report", "calibrate", "validate", "plan", "serve", "compare", "models", "hardware",
               "networks", "engines")


def subcommand(name: str):
    """The module of subcommand `name`, imported on first use: `roofline predict` loads neither the planner
    nor the report (issue 11, the cold start)."""
    return importlib.import_module(f"{__name__}.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with `only` of that one alone (what a run of it needs: the others'
    modules stay unimported)."""
    p = argparse.ArgumentParser(prog="roofline", description="LLM-inference roofline and cost model.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS if only is None else (only,):
        module = subcommand(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the top-level parser has no option but --help, so a known first word is the subcommand; anything else
    # (--help, a typo, nothing) gets the full parser, whose help and errors list every subcommand
    only = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    a = build_parser(only).parse_args(argv)
    run = subcommand(a.command).run
    try:
        print(run(a))
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`roofline ... --json | head`): stop quietly, as other Unix tools do; stdout is
        # pointed at /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe stopped
    except SpecError as exc:
        print(f"roofline: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"roofline: error: {validation_message(exc, 'input')}", file=sys.stderr)
        return 2
    return 0


__all__ = ["build_parser", "main", "SUBCOMMANDS", "subcommand"]
