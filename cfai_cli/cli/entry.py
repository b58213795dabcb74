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
    from cfai_cli.cli import roothelp

    if roothelp.printed(sys.argv[1:]):  # `cfai --help` as an earlier run printed it (cli/roothelp.py)
        return
    from cfai_cli.cli import collector

    collector.own()  # off while the command's modules are imported (cli/collector.py)
    # pydantic looks for plugins in the entry points of every installed distribution when it builds its first
    # model (30-70 ms in a virtualenv with a few dozen packages); cfai has none and its models are its own
    # business. A user who sets the variable keeps their value. `cfai serve`'s workers inherit it.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _skip_plugin_loader()
    from cfai_cli.cli.compiled import install

    install()  # dataclass methods and forward references compiled by an earlier run: not compiled again
    from cfai_cli.cli.app import main as run

    run()


def _skip_plugin_loader() -> None:
    """With every plugin disabled, pydantic still imports its plugin loader when it builds its first validator,
    and the loader imports importlib.metadata at the top (16 modules, ~2 % of a one-shot `cfai chat`'s
    instructions under callgrind) only to return no plugins. A stand-in that returns none, as the loader itself
    would, is put in its place; only when the setting disables them all (a user's list of names keeps the real
    loader) and before pydantic is imported. The loader's only caller imports just `get_plugins`."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in ("__all__", "1", "true") or "pydantic" in sys.modules:
        return
    import types

    loader = types.ModuleType("pydantic.plugin._loader")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # get_plugins() -> () (no plugins)
    sys.modules.setdefault("pydantic.plugin._loader", loader)
