"""The `cfai` command: the Typer app, its one error boundary, and `main()` (the console script).

Imports typer and errors; the command modules import their heavy dependencies (httpx, pydantic, starlette,
uvicorn, rich) only inside the command functions: `cfai --help` must start fast. `main()` builds the app with
the one command it runs (`build(only=...)`): Typer makes a click command of every registered function
(signatures, type hints, parameters) and each module imports its own helpers, work a one-shot command never
uses. `app` (tests, completions) has them all.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from typer._click.exceptions import UsageError  # Typer vendors click; BadParameter's own base class
from typer.core import TyperGroup

from cfai_cli import __version__
from cfai_cli.cli.roothelp import asks_root_help, record
from cfai_cli.errors import EXIT_CODE_HELP, CfaiError, ExitCode

# Each command (or sub-app) name -> the cli module whose register() adds it, in `cfai --help`'s order.
COMMANDS: dict[str, str] = {
    "chat": "chat", "models": "models", "embed": "embed", "rerank": "rerank", "image": "image",
    "transcribe": "transcribe", "speak": "speak", "tokens": "tokens", "config": "config", "keygen": "keys",
    "keys": "keys", "serve": "serve", "usage": "usage", "cache": "cache", "moderate": "moderate",
    "doctor": "doctor", "logs": "logs", "batch": "batch", "db": "db",
}


class _Boundary(TyperGroup):
    """The CLI's one error boundary, around every (sub)command.

    A CfaiError becomes `cfai: <message>` on stderr and its documented exit status; Ctrl-C exits 130.
    Anything else is a bug and keeps its traceback (never with locals, which may hold the token).
    It lives in the group rather than in main() so that every way of running the app (the console
    script, `python -m cfai_cli`, Typer's test runner) goes through it.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as err:  # the root's own flags (`cfai --bogus`)
            _usage_fail(err)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CfaiError as err:
            _fail(err.message, err.exit_code)
        except UsageError as err:  # a subcommand's flags or arguments, typer.BadParameter
            _usage_fail(err)
        except UnicodeDecodeError:  # a command that reads text from stdin met bytes that are not UTF-8
            _fail("stdin is not UTF-8 text; convert it first (iconv -f LATIN1 -t UTF-8), or pass the text as an "
                  "argument.", ExitCode.INVALID_REQUEST)
        except (typer.Abort, EOFError):
            _fail("aborted: no input (stdin was closed or empty)", ExitCode.ERROR)
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED)


def _fail(message: str, status: ExitCode) -> NoReturn:
    from cfai_cli.cli.render import Terminal

    Terminal().error(message)
    raise typer.Exit(int(status))


def _usage_fail(err: UsageError) -> NoReturn:
    """A usage error as click shows it (usage line, where to find help), but ending in a `cfai:` line like
    every other error, so scripts and people find the reason in the same place."""
    from cfai_cli.cli.render import Terminal

    term = Terminal()
    if err.ctx is not None:
        term.note(err.ctx.get_usage())
        term.note(f"Try '{err.ctx.command_path} {err.ctx.help_option_names[0]}' for help.")
    message = err.format_message()
    term.error(message[:1].lower() + message[1:] if message[1:2].islower() else message)
    raise typer.Exit(int(ExitCode.USAGE))


def _new_app() -> typer.Typer:
    from cfai_cli.cli.completion import use_cfai_scripts

    use_cfai_scripts()  # --install-completion / --show-completion give bash cfai's own script (cli.completion)
    return typer.Typer(
        name="cfai",
        cls=_Boundary,
        help="Cloudflare Workers AI from the command line, and a local OpenAI- and Anthropic-compatible proxy in "
             "front of it.\n\n"
             "Credentials come from CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN or `cfai config set`; "
             "try it without an account with --offline.",
        epilog=EXIT_CODE_HELP,
        no_args_is_help=True,
        add_completion=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _version(value: bool) -> None:
    if value:
        from cfai_cli.cli.render import Terminal

        Terminal().line(f"cfai {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only data and errors: no notes, warnings, "
                                        "progress or reasoning on stderr [env: CFAI_QUIET=1].")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the HTTP traffic to Workers AI on stderr, with "
                                        "secrets masked [env: CFAI_DEBUG=1].")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Every command answers from the built-in Workers AI "
                                          "emulator (no account) [env: CFAI_OFFLINE=1].")] = False,
) -> None:
    """Cloudflare Workers AI from the command line, and a local OpenAI- and Anthropic-compatible proxy."""
    import logging
    import os

    from cfai_cli.cli.collector import settle
    from cfai_cli.cli.render import OutputOptions

    # Every command runs with the collector on (a one-shot pauses it for its imports: cli/collector.py); these
    # imports come before, with it still off, as the command modules' do.
    settle()
    # Every Terminal the command makes finds these on the context (OutputOptions.current), so -q never
    # travels through the environment (where it would outlive this command in the same process).
    # `cfai --offline CMD` travels the same way (cli.common.offline_requested), not through the environment.
    ctx.obj = OutputOptions.from_environ(os.environ, quiet=quiet, offline=offline)
    logger = logging.getLogger("cfai.http")
    if debug or os.environ.get("CFAI_DEBUG"):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("cfai debug: %(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG)
    else:  # a previous --debug run in this process must not keep logging
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)


def build(only: str | None = None) -> typer.Typer:
    """The `cfai` app with every command, or with `only` that one (its module's commands; "": none)."""
    app = _new_app()
    app.callback()(root)
    modules = dict.fromkeys(COMMANDS.values()) if only is None else [COMMANDS[only]] if only else []
    for name in modules:
        importlib.import_module(f"cfai_cli.cli.{name}").register(app)
    return app


def command_named(argv: list[str]) -> str | None:
    """The command `argv` runs (the root's options are all flags, so it is the first word that is not one),
    or None when the whole app is needed: `cfai --help`, an unknown command (click lists the known ones),
    shell completion."""
    if "_CFAI_COMPLETE" in os.environ:
        return None
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def help_listing() -> TyperGroup:
    """The root group for `cfai --help`: the real root (options, help, epilog) with a stand-in per command
    that carries only what the listing shows (name, help). Typer builds a command by introspecting its
    function three times over (signature, type hints, completion), ~40 ms for all of them, to print one
    line each; tests/cli/test_app.py checks the listing is the full app's, word for word."""
    from typer.core import TyperCommand as Command
    from typer.main import get_command, solve_typer_info_defaults

    full = build()
    group = get_command(build(only=""))
    assert isinstance(group, TyperGroup)  # a callback makes Typer build a group, even with no command
    for info in full.registered_commands:
        assert info.name is not None  # every register() names its command
        group.add_command(Command(info.name, help=info.help, short_help=info.short_help, hidden=info.hidden,
                                  deprecated=info.deprecated))
    for sub in full.registered_groups:
        solved = solve_typer_info_defaults(sub)
        group.add_command(Command(solved.name, help=solved.help, short_help=solved.short_help,
                                  hidden=solved.hidden, deprecated=solved.deprecated))
    return group


def __getattr__(name: str) -> Any:
    if name == "app":  # built on first use and kept: `from cfai_cli.cli.app import app`
        globals()["app"] = app = build()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point (`cfai`)."""
    argv = sys.argv[1:]
    if asks_root_help(argv) and "_CFAI_COMPLETE" not in os.environ:
        record(argv, lambda: help_listing()(argv, prog_name="cfai"))  # kept for the next run (cli/roothelp.py)
    build(command_named(argv))(prog_name="cfai")
