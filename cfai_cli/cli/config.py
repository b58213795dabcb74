"""`cfai config show|set|unset|path`: see and change the settings in the config file.

Imports typer, settings and errors (all cheap) and cli.render inside commands. The file is written 0600 by
settings.set_config_value because it may hold the API token; `show` never prints the token unmasked.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import JsonOption, locations
from cfai_cli.settings import SETTABLE_KEYS

# "aliases.<name>" would read as an HTML tag in the Markdown help.
KEYS_HELP = ", ".join(SETTABLE_KEYS).replace("<name>", "NAME")

app = typer.Typer(
    name="config",
    help="See and change cfai's settings (precedence: flag > environment > config file > default).",
    no_args_is_help=True,
    epilog="Examples:\n\n  cfai config show\n\n  cfai config set account_id 0123456789abcdef0123456789abcdef\n\n"
           "  cfai config set aliases.fast @cf/meta/llama-3.1-8b-instruct-fast\n\n  cfai config path",
)


@app.command("show", epilog="Example:\n\n  cfai config show --json | jq .default_model")
def show(invocation: typer.Context, json_out: JsonOption = False) -> None:
    """Print the settings in effect, with where the config file is. The API token is masked."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import load_settings, public_view

    term = Terminal(options=invocation.obj)
    view = public_view(load_settings())
    if json_out:
        term.json(view)
        return
    rows: list[list[str]] = []
    for key, value in view.items():
        if isinstance(value, dict):
            rows.extend([f"{key}.{name}", str(target)] for name, target in sorted(value.items()))
        else:
            rows.append([key, "" if value is None else str(value)])
    term.table(["setting", "value"], rows)


@app.command("set", epilog="Examples:\n\n  cfai config set timeout 120\n\n"
                           "  printf %s \"$TOKEN\" | cfai config set api_token -")
def set_(
    invocation: typer.Context,
    key: Annotated[str, typer.Argument(help=f"One of: {KEYS_HELP}.", show_default=False)],
    value: Annotated[str, typer.Argument(help="The new value; - reads it from stdin (keeps tokens out of shell "
                                              "history).", show_default=False)],
) -> None:
    """Set one setting in the config file (created readable by you only, mode 0600)."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import mask_secret, set_config_value

    term = Terminal(options=invocation.obj)
    if value == "-":
        value = term.stdin.readline().strip()
        if not value:
            raise typer.BadParameter("nothing on stdin", param_hint="VALUE")
    path = locations().config_file
    set_config_value(path, key, value)
    shown = mask_secret(value) if key == "api_token" else value
    term.note(f"{key} = {shown} (in {path})")


@app.command("unset", epilog="Example:\n\n  cfai config unset default_model")
def unset(invocation: typer.Context,
          key: Annotated[str, typer.Argument(help=f"One of: {KEYS_HELP}.", show_default=False)]) -> None:
    """Remove one setting from the config file, so the environment or the default applies again."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import set_config_value

    path = locations().config_file
    set_config_value(path, key, None)
    Terminal(options=invocation.obj).note(f"{key} removed (from {path})")


@app.command("path", epilog="Examples:\n\n  cfai config path\n\n  ls -l \"$(cfai config path --data)\"")
def path(invocation: typer.Context,
         data: Annotated[bool, typer.Option("--data", help="Print the data directory (cfai.db) instead.")] = False
         ) -> None:
    """Print where the config file is (it may not exist yet). CFAI_HOME moves it."""
    from cfai_cli.cli.render import Terminal

    files = locations()
    Terminal(options=invocation.obj).line(str(files.data_dir if data else files.config_file))


def register(root: typer.Typer) -> None:
    root.add_typer(app)
