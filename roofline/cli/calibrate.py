"""`roofline calibrate`: wired to the top-level `calibrate` package, which is imported only when the parser is
built or this subcommand runs (never by `import roofline`; `calibrate.cli` itself imports without torch)."""

from __future__ import annotations

HELP = "microbenchmark this GPU and write a calibrated hardware profile"
DESCRIPTION = None


def add_arguments(p) -> None:
    from calibrate import cli as calibrate_cli  # imports without torch

    p.description = calibrate_cli.CALIBRATE_DESCRIPTION
    calibrate_cli.add_calibrate_arguments(p)


def run(a) -> str:
    from calibrate import cli as calibrate_cli

    return calibrate_cli.run(a)
