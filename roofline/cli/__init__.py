"""`roofline` command line: one module per subcommand; this one builds the parser and runs the chosen one.

Each subcommand module has `add_arguments(parser)` (flags declared as text) and `run(args) -> str` (flags
converted with `cli.args`, the library called, the answer formatted). Every error the library can detect
(unknown id, impossible value, a dtype the hardware lacks) is printed as one line
`roofline: error: FIELD: what and the fix` with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from ..errors import SpecError, validation_message
from . import calibrate, compare, engines, hardware, models, networks, plan, predict, report, serve, validate

# (name, module): the order `roofline --help` lists them in
SUBCOMMANDS = (("predict", predict), ("report", report), ("calibrate", calibrate), ("validate", validate),
               ("plan", plan), ("serve", serve), ("compare", compare), ("models", models), ("hardware", hardware),
               ("networks", networks), ("engines", engines))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roofline", description="LLM-inference roofline and cost model.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS:
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION))
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    run = dict(SUBCOMMANDS)[a.command].run
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


__all__ = ["build_parser", "main", "SUBCOMMANDS"]
