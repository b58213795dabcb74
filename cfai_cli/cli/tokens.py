"""`cfai tokens`: how many tokens a text is for a model, counted locally (no account, no network).

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same validated TokenizeRequest that POST /v1/tokenize takes, through the same service.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import JsonOption, complete_model
from cfai_cli.core.defaults import DEFAULT_CHAT_MODEL

HELP = """Count the tokens of a text for a model, locally: no Cloudflare account or network needed.

The text is the argument, or stdin when it is omitted or `-` (counted exactly as given, final newline
included). Counts are exact for Llama 3.x and Llama 4 models when the optional `llama-models` package is
installed; otherwise they are an estimate (within about 10% for English prose and code), labelled as such.
On a terminal it prints a one-line summary; piped, just the number; --json prints the object that the
proxy's POST /v1/tokenize returns.
"""

EPILOG = """Examples:

  cfai tokens "How many tokens is this?" -m gpt-4o-mini

  cfai tokens -m @cf/openai/gpt-oss-120b < prompt.txt

  cfai tokens --json - < notes.md | jq .total_tokens
"""


def tokens(
    invocation: typer.Context,
    text: Annotated[str | None, typer.Argument(help="The text to count; `-` or nothing reads stdin.",
                                               show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="An OpenAI alias (gpt-4o-mini) or a Workers AI id "
                                       "(@cf/qwen/qwen3-30b-a3b-fp8).")] = DEFAULT_CHAT_MODEL,
    json_out: JsonOption = False,
) -> None:
    import asyncio

    from cfai_cli.cli.common import settings_from_flags
    from cfai_cli.cli.render import Terminal
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.tokens import TokenizeRequest, TokenizeResult
    from cfai_cli.service.tokens import count_tokens, local_context

    # Not common.start(): nothing here reaches Workers AI, so neither credentials nor the offline warning apply;
    # the settings are still loaded, for the aliases in the config file.
    term = Terminal(options=invocation.obj)
    settings = settings_from_flags()
    if text is None or text == "-":
        if term.in_tty:
            raise typer.BadParameter("nothing to count: give TEXT or pipe text on stdin.", param_hint="TEXT")
        from cfai_cli.cli.textin import read_stdin_text

        text = read_stdin_text(term, command="cfai tokens")
    req = validate_request(TokenizeRequest, {"model": model, "input": text})

    async def run() -> TokenizeResult:
        async with local_context(settings) as ctx:
            return await count_tokens(ctx, req)

    result = asyncio.run(run())
    if json_out:
        term.json(result)
    elif term.out_tty:
        how = result["method"] if result["tokenizer"] is None else f"{result['method']}, {result['tokenizer']}"
        term.line(f"{result['total_tokens']} tokens ({how}) for {result['model']}")
    else:
        term.line(str(result["total_tokens"]))


def register(app: typer.Typer) -> None:
    app.command("tokens", help=HELP, epilog=EPILOG)(tokens)
