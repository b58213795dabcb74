"""The `cfai` console script: `--version` is answered before Typer is even imported, then the app runs.

Imports only the standard library at the top: start-up time is a product feature (DESIGN.md habit 12).
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from cfai_cli import __version__

        sys.stdout.write(f"cfai {__version__}\n")
        return
    from cfai_cli.cli.app import main as run

    run()
