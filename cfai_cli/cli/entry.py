"""The `cfai` console script: `--version` is answered before Typer is even imported, then the app runs.

Imports only the standard library at the top: start-up time is a product feature (DESIGN.md habit 12).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType


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
    instructions under callgrind) only to return no plugins. A stand-in whose `get_plugins` returns none, as the
    loader itself does under that setting, is put in its place; only when the setting disables them all (a user's
    list of names keeps the real loader) and before pydantic is imported.

    The loader is pydantic's private module and the pin has no upper bound, so the stand-in must not break on a
    pydantic that asks it for more: any other name it is asked for replaces it with the real loader and comes from
    there (`_NoPlugins.__getattr__`; tests/cli/test_app.py), and `get_plugins` takes whatever arguments it is
    given. A pydantic that no longer has the module, or never imports it, simply never meets the stand-in."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in ("__all__", "1", "true") or "pydantic" in sys.modules:
        return
    sys.modules.setdefault(_NoPlugins.NAME, _NoPlugins(_NoPlugins.NAME))


def _no_plugins(*args: object, **kwargs: object) -> tuple[()]:
    return ()


class _NoPlugins(ModuleType):
    """pydantic.plugin._loader with every plugin disabled (see _skip_plugin_loader)."""

    NAME = "pydantic.plugin._loader"
    get_plugins = staticmethod(_no_plugins)

    def __getattr__(self, name: str) -> object:  # anything else: the real loader's, which takes our place
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(self.NAME) is self:
            del sys.modules[self.NAME]
        from importlib import import_module

        return getattr(import_module(self.NAME), name)
