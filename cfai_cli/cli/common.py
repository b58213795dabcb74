"""Options shared by several commands and the one way commands turn flags into Settings.

Imports typer, settings (cheap: standard library only until a command runs). Nothing here prints but through
the Terminal a command hands it (`report_spend`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.errors import CfaiError
from cfai_cli.settings import Settings, directories, load_settings

if TYPE_CHECKING:
    from cfai_cli.cli.render import OutputOptions, Terminal
    from cfai_cli.service.context import Context

OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="Answer from the built-in Workers AI emulator (canned answers, no account)."),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout", min=0.001, metavar="SECONDS",
                 help="Total deadline per upstream request, retries included [env: CFAI_TIMEOUT; default 300]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def start(options: OutputOptions | None, *, offline: bool, timeout: float | None) -> tuple[Terminal, Settings]:
    """What a command that calls Workers AI begins with: the terminal, the settings, the offline warning."""
    from cfai_cli.cli.render import Terminal

    term = Terminal(options=options)
    settings = settings_from_flags(offline=offline, timeout=timeout, options=options)
    if settings.offline:
        term.offline_warning()
    return term, settings


def offline_requested(offline: bool, options: OutputOptions | None) -> bool:
    """A command's own --offline, or the root's `cfai --offline` (on the context's options); CFAI_OFFLINE is
    read by the settings, the one place every command's settings come from."""
    return offline or bool(options is not None and options.offline)


def settings_from_flags(*, offline: bool = False, timeout: float | None = None,
                        options: OutputOptions | None = None) -> Settings:
    """Settings with command-line flags on top of environment, config file and defaults."""
    return load_settings({"offline": offline_requested(offline, options), "timeout": timeout})


def locations() -> Settings:
    """Default settings that only know where files live (config_file, database).

    Commands that just need a path use this, so they still work while the config file or the environment
    holds a bad value that `settings_from_flags` would reject.
    """
    config_dir, data_dir = directories(os.environ)
    return Settings(config_dir=config_dir, data_dir=data_dir)


MODELS_CACHE = "models-cache.json"


def complete_model(incomplete: str) -> list[str]:
    """Shell completion for -m: aliases, and the model ids the last `cfai models` saw (no network here)."""
    import json

    from cfai_cli.core.catalog import DEFAULT_ALIASES
    from cfai_cli.settings import read_config_file

    where = locations()
    names = set(DEFAULT_ALIASES)
    try:
        aliases = read_config_file(where.config_file).get("aliases", {})
        names.update(aliases if isinstance(aliases, dict) else {})
        cached = json.loads((where.data_dir / MODELS_CACHE).read_text(encoding="utf-8"))
        names.update(str(n) for n in cached if isinstance(n, str))
    except (OSError, ValueError, CfaiError):
        pass
    return sorted(n for n in names if n.startswith(incomplete))


UsageOption = Annotated[bool, typer.Option(
    "--usage", help="Print the tokens, neurons and cost (at list price) the command used on stderr (docs/cost.md).")]


def report_spend(ctx: Context, term: Terminal) -> None:
    """`--usage`'s line, from the command's record: neurons as Workers AI reported them, else estimated."""
    from cfai_cli.service.cost import settle

    record = ctx.record
    settle(record, ctx.cache)
    term.spend(record.prompt_tokens, record.completion_tokens, record.neurons, record.neurons_estimated)

