"""The `cfai` console script: `--version` is answered before Typer is even imported, then the app runs.

Imports only the standard library at the top: start-up time is a product feature (DESIGN.md habit 12).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from cfai_cli import __version__

        sys.stdout.write(f"cfai {__version__}\n")
        return
    # pydantic looks for plugins in the entry points of every installed distribution when it builds its first
    # model (30-70 ms in a virtualenv with a few dozen packages); cfai has none and its models are its own
    # business. A user who sets the variable keeps their value. `cfai serve`'s workers inherit it.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from cfai_cli.cli.app import main as run

    run()
