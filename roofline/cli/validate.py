"""`roofline validate`: real transformer inference against every prediction, in the top-level `calibrate`
package (imported when the parser is built or the subcommand runs, never by `import roofline`)."""

from __future__ import annotations

HELP = "run real transformer inference and measure the error of every prediction"
DESCRIPTION = None


def add_arguments(p) -> None:
    from calibrate import cli as calibrate_cli  # imports without torch

    p.description = calibrate_cli.VALIDATE_DESCRIPTION
    calibrate_cli.add_validate_arguments(p)


def run(a) -> str:
    from calibrate import cli as calibrate_cli

    return calibrate_cli.run(a)
