"""Options shared by several commands and the one way commands turn flags into Settings.

Imports typer; settings inside the functions that load them: every command module imports this one, and
`cfai --help` imports every command module (and no settings). Nothing here prints but through the Terminal a
command hands it (`report_spend`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cfai_cli.errors import CfaiError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cfai_cli.cli.render import OutputOptions, Terminal
    from cfai_cli.service.context import Context
    from cfai_cli.settings import Settings

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
    from cfai_cli.settings import load_settings

    return load_settings({"offline": offline_requested(offline, options), "timeout": timeout})


def locations() -> Settings:
    """Default settings that only know where files live (config_file, database).

    Commands that just need a path use this, so they still work while the config file or the environment
    holds a bad value that `settings_from_flags` would reject.
    """
    from cfai_cli.settings import Settings, directories

    config_dir, data_dir = directories(os.environ)
    return Settings(config_dir=config_dir, data_dir=data_dir)


def storage() -> Path | str:
    """The database the key, usage and cache commands use: [store] url / $CFAI_STORE_URL, else cfai.db."""
    from cfai_cli.settings import store_location

    return store_location()


MODELS_CACHE = "models-cache.json"


# The Workers AI task of the models each command's -m takes (moderation runs Llama Guard, a text model;
# the reranker is listed under Text Classification).
COMMAND_TASKS = {"chat": "Text Generation", "moderate": "Text Generation", "tokens": "Text Generation",
                 "embed": "Text Embeddings", "image": "Text-to-Image", "transcribe": "Automatic Speech Recognition",
                 "speak": "Text-to-Speech", "rerank": "Text Classification"}


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for -m: aliases, and the model ids the last `cfai models` saw (no network here), only
    those of the command's task where the cache knows it (an alias by its target's task)."""
    import json

    from cfai_cli.core.catalog import DEFAULT_ALIASES
    from cfai_cli.settings import read_config_file

    where = locations()
    aliases: dict[str, object] = dict(DEFAULT_ALIASES)
    tasks: dict[str, str | None] = {}
    try:
        configured = read_config_file(where.config_file).get("aliases", {})
        aliases.update(configured if isinstance(configured, dict) else {})
        cached = json.loads((where.data_dir / MODELS_CACHE).read_text(encoding="utf-8"))
        # {id: task}; a list of ids is what cfai before tasks wrote (every id then fits every command).
        pairs = cached.items() if isinstance(cached, dict) else ((n, None) for n in cached)
        tasks.update((n, t if isinstance(t, str) else None) for n, t in pairs if isinstance(n, str))
    except (OSError, ValueError, AttributeError, TypeError, CfaiError):
        pass
    tasks.update({a: tasks.get(t) if isinstance(t, str) else None for a, t in aliases.items()})
    wanted = COMMAND_TASKS.get(ctx.command.name or "") if ctx.command else None
    return sorted(n for n, task in tasks.items()
                  if n.startswith(incomplete) and (wanted is None or task is None or task == wanted))


def complete_choices(*values: str) -> Callable[[str], list[str]]:
    """Shell completion for an option that takes one of `values` (--format, --by)."""
    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return complete


UsageOption = Annotated[bool, typer.Option(
    "--usage", help="Print the tokens, neurons and cost (at list price) the command used on stderr (docs/cost.md).")]


def report_spend(ctx: Context, term: Terminal) -> None:
    """`--usage`'s line, from the command's record: neurons as Workers AI reported them, else estimated."""
    from cfai_cli.service.cost import settle

    record = ctx.record
    settle(record, ctx.cache)
    term.spend(record.prompt_tokens, record.completion_tokens, record.neurons, record.neurons_estimated)


M = TypeVar("M", bound="BaseModel")


def validate_body(model: type[M], body: dict[str, Any], from_file: str | None) -> M:
    """`body` (a chat or Responses request built from flags or `--request FILE`) validated as `model`; an error
    in a file's body names the file."""
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.errors import InvalidRequest

    try:
        return validate_request(model, body)
    except InvalidRequest as exc:
        if from_file is None:
            raise
        raise InvalidRequest(f"--request {from_file}: {exc.message}", param=exc.param, code=exc.code) from None
