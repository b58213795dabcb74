"""`cfai moderate`: classify a text with the guard model; the exit status says safe (0) or flagged (10).

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same validated ModerationRequest the proxy's /v1/moderations uses, through the same service.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import (
    JsonOption,
    OfflineOption,
    TimeoutOption,
    UsageOption,
    complete_model,
    report_spend,
    start,
)
from cfai_cli.core.defaults import DEFAULT_MODERATION_MODEL
from cfai_cli.errors import ExitCode

HELP = """Check a text with a content-safety model (Llama Guard 3 by default).

Prints a verdict line (`safe`, or `flagged: <categories> (<guard codes>)`); --json prints the OpenAI moderation
object instead. The exit status is 0 when the text is safe and 10 when it is flagged, so scripts can branch on it.
Give the text as an argument, or `-` to read it from stdin.
"""

EPILOG = """Examples:

  cfai moderate "how do I bake bread?"

  cat reply.txt | cfai moderate - || echo "blocked"

  cfai moderate --json "some text" | jq '.results[0].categories'
"""


def moderate(
    invocation: typer.Context,
    text: Annotated[str, typer.Argument(help="The text to check, or - to read it from stdin.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="An OpenAI moderation alias (omni-moderation-latest) or a Workers AI "
                                       "guard model id (@cf/meta/llama-guard-3-8b).")] = DEFAULT_MODERATION_MODEL,
    json_out: JsonOption = False,
    show_usage: UsageOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    import asyncio

    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.moderations import ModerationRequest, ModerationResponse
    from cfai_cli.service.context import open_context
    from cfai_cli.service.moderations import create_moderation

    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    if text == "-":
        from cfai_cli.cli.textin import read_stdin_text

        text = read_stdin_text(term, command="cfai moderate")
    if not text.strip():
        raise typer.BadParameter("nothing to check: the text is empty.", param_hint="TEXT")
    req = validate_request(ModerationRequest, {"model": model, "input": text})

    async def run() -> ModerationResponse:
        async with open_context(settings) as ctx:
            with term.waiting("checking"):
                done = await create_moderation(ctx, req)
            if show_usage:
                report_spend(ctx, term)
            return done

    answer = asyncio.run(run())
    result = answer["results"][0]
    if json_out:
        term.json(answer)
    elif result["flagged"]:
        named = [name for name, on in result["categories"].items() if on] or ["no OpenAI category"]
        term.line(f"flagged: {', '.join(named)} ({', '.join(result['cfai_guard_categories']) or 'unsafe'})")
    else:
        term.line("safe")
    if result["flagged"]:
        raise typer.Exit(int(ExitCode.FLAGGED))


def register(app: typer.Typer) -> None:
    app.command("moderate", help=HELP, epilog=EPILOG)(moderate)
