"""`cfai config show|get|set|unset|path`: see and change the settings in the config file.

Imports typer and cli.common at the top; settings, errors and cli.render inside the commands (`cfai --help`
imports this module to list the group). The file is written 0600 by
settings.set_config_value because it may hold the API token; `show` and `get` never print the token unmasked.
A broken config file does not stop these commands: `show` and `get` print what applies without it and then
fail with the file's mistake (exit 3), `set` and `unset` repair it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.cli.common import JsonOption, locations, offline_requested

if TYPE_CHECKING:
    from cfai_cli.cli.render import OutputOptions
    from cfai_cli.settings import Settings


def keys_help() -> str:
    """The keys `config set` and `unset` take, for their help. Called from those commands' annotations, which
    Typer evaluates when it builds them: `cfai --help` imports this module for the group's line, and no settings.
    """
    from cfai_cli.settings import SETTABLE_KEYS

    # "aliases.<name>" would read as an HTML tag in the Markdown help.
    return ", ".join(SETTABLE_KEYS).replace("<name>", "NAME")


app = typer.Typer(
    name="config",
    help="See and change cfai's settings (precedence: flag > environment > config file > default).",
    no_args_is_help=True,
    epilog="Examples:\n\n  cfai config show\n\n  cfai config get timeout\n\n"
           "  cfai config set account_id 0123456789abcdef0123456789abcdef\n\n"
           "  cfai config set aliases.fast @cf/meta/llama-3.1-8b-instruct-fast\n\n  cfai config path",
)


def _effective(options: OutputOptions | None) -> tuple[Settings, str | None]:
    """The settings in effect and None; with a broken config file, those without it and the file's mistake."""
    from cfai_cli.errors import ConfigError
    from cfai_cli.settings import load_settings

    flags = {"offline": offline_requested(False, options)}  # `cfai --offline config show`
    try:
        return load_settings(flags), None
    except ConfigError as err:
        return load_settings(flags, use_file=False), err.message


def _fail_after(problem: str | None) -> None:
    if problem is not None:
        from cfai_cli.errors import ConfigError

        raise ConfigError(problem + " The values shown leave the config file out.")


@app.command("show", epilog="Example:\n\n  cfai config show --json | jq .default_model")
def show(invocation: typer.Context, json_out: JsonOption = False) -> None:
    """Print the settings in effect and where each comes from (flag, environment, file, default), with where
    the config file is. The API token is masked."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import public_view

    term = Terminal(options=invocation.obj)
    settings, problem = _effective(invocation.obj)
    view = public_view(settings)
    if json_out:
        term.json({**view, "sources": dict(settings.origins)})
        _fail_after(problem)
        return
    rows: list[list[str]] = []
    for key, value in view.items():
        origin = settings.origins.get(key, "")
        if isinstance(value, dict) and key in ("aliases", "vision_aliases"):
            rows.extend([f"{key}.{name}", str(target), origin] for name, target in sorted(value.items()))
        else:
            rows.append([key, "" if value is None else str(value), origin])
    term.table(["setting", "value", "source"], rows)
    _fail_after(problem)


@app.command("get", epilog="Examples:\n\n  cfai config get timeout\n\n  cfai config get aliases.gpt-4o\n\n"
                           "  cfai config get cache --json")
def get(invocation: typer.Context,
        key: Annotated[str, typer.Argument(help="A setting, or a dotted path into a table (aliases.NAME, "
                                                "cache.enabled).", show_default=False)],
        json_out: JsonOption = False) -> None:
    """Print one setting's value in effect (the API token masked)."""
    import difflib
    import json

    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import ConfigError
    from cfai_cli.settings import public_view

    term = Terminal(options=invocation.obj)
    settings, problem = _effective(invocation.obj)
    value: object = public_view(settings)
    for i, part in enumerate(key.split(".")):
        if not isinstance(value, dict) or part not in value:
            known = sorted(value) if isinstance(value, dict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean {'.'.join([*key.split('.')[:i], close[0]])}?" if close else ""
            raise ConfigError(f"No setting {key!r}{hint} (`cfai config show` lists them).")
        value = value[part]
    if json_out:
        term.json(value)
    elif isinstance(value, dict | list):
        term.line(json.dumps(value, ensure_ascii=False))
    else:
        term.line("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
    _fail_after(problem)


@app.command("set", epilog="Examples:\n\n  cfai config set timeout 120\n\n"
                           "  cfai config set api_token            # asks without echo\n\n"
                           "  printf %s \"$TOKEN\" | cfai config set api_token -")
def set_(
    invocation: typer.Context,
    key: Annotated[str, typer.Argument(help=f"One of: {keys_help()}.", show_default=False)],
    value: Annotated[str | None, typer.Argument(
        help="The new value; - or none reads it from stdin when piped (keeps tokens out of shell history); "
             "none on a terminal asks for it (without echo for api_token).", show_default=False)] = None,
) -> None:
    """Set one setting in the config file (created readable by you only, mode 0600), checked as loading
    checks it; the file's comments and layout are kept."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import mask_secret, set_config_value

    term = Terminal(options=invocation.obj)
    secret = key == "api_token"
    if value is None and term.in_tty:
        value = typer.prompt(key, hide_input=secret, err=True).strip()
    elif value is None or value == "-":
        value = term.stdin.readline().strip()
    if not value:
        raise typer.BadParameter("no value given (nothing on stdin)", param_hint="VALUE")
    path = locations().config_file
    set_config_value(path, key, value)
    shown = mask_secret(value) if secret else value
    term.note(f"{key} = {shown} (in {path})")


@app.command("unset", epilog="Example:\n\n  cfai config unset default_model")
def unset(invocation: typer.Context,
          key: Annotated[str, typer.Argument(help=f"One of: {keys_help()}.", show_default=False)]) -> None:
    """Remove one setting from the config file, so the environment or the default applies again; any key the
    file holds can be removed (a misspelt one: `cfai config unset upstreams.groq.api_kye`)."""
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
