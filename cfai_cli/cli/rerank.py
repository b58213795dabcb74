"""`cfai rerank`: order the lines of a file (or stdin) by relevance to a query, with a Workers AI reranker.

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same validated RerankRequest the proxy's /v1/rerank uses, through the same service.
"""

from __future__ import annotations

from pathlib import Path
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
from cfai_cli.core.defaults import DEFAULT_RERANK_MODEL

HELP = """Rank documents by relevance to QUERY: one document per non-blank line of --file (`-` or no
--file reads stdin).

On a terminal: a table of rank, score, line number and text, best first. Piped: `score<TAB>text` lines,
best first. --json prints the whole rerank object (id, results with index and relevance_score, meta, usage).
"""

EPILOG = """Examples:

  cfai rerank "how do I reset my password?" --file faq.txt --top 3

  grep -h error *.log | cfai rerank "disk full" | head -5

  cfai rerank "capital of France" -f cities.txt --json | jq '.results[0].index'
"""


def read_documents(file: Path | None, stdin_text: str | None, file_text: str | None = None) -> list[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line of the file (its text, read by the caller through
    cli.textin) or of stdin."""
    if file is not None and str(file) != "-":
        content, source = file_text or "", str(file)
    elif stdin_text is not None:
        content, source = stdin_text, "stdin"
    else:
        raise typer.BadParameter("no documents: give --file FILE, or pipe them on stdin (one per line).",
                                 param_hint="--file")
    lines = [(n, line.strip()) for n, line in enumerate(content.splitlines(), start=1) if line.strip()]
    if not lines:
        raise typer.BadParameter(f"{source} has no documents (every line is blank).", param_hint="--file")
    return lines


def rerank(
    invocation: typer.Context,
    query: Annotated[str, typer.Argument(help="What the documents are ranked against.", show_default=False)],
    file: Annotated[Path | None, typer.Option("--file", "-f", show_default=False,
                                              help="Documents, one per line; `-` for stdin.")] = None,
    top: Annotated[int | None, typer.Option("--top", "-n", min=1, show_default=False,
                                            help="Only the best N documents (default: all).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="A rerank alias (rerank-v3.5) or a Workers AI reranker id "
                                            "(@cf/baai/bge-reranker-base).")] = DEFAULT_RERANK_MODEL,
    json_out: JsonOption = False,
    show_usage: UsageOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    import asyncio

    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.rerank import RerankRequest, RerankResponse
    from cfai_cli.service.context import open_context
    from cfai_cli.service.rerank import rerank as run_rerank

    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    reads_stdin = file is None or str(file) == "-"
    if reads_stdin and term.in_tty:
        raise typer.BadParameter("no documents: give --file FILE, or pipe them on stdin (one per line).",
                                 param_hint="--file")
    from cfai_cli.cli.textin import read_file_text, read_stdin_text

    piped = read_stdin_text(term, command="cfai rerank") if reads_stdin else None
    content = None if reads_stdin or file is None else read_file_text(file, term, command="cfai rerank",
                                                                      param="--file")
    docs = read_documents(file, piped, content)
    req = validate_request(RerankRequest, {"model": model, "query": query, "documents": [t for _, t in docs],
                                           "top_n": top, "return_documents": True})

    async def run() -> RerankResponse:
        async with open_context(settings) as ctx:
            with term.progress(len(docs), f"ranking {len(docs)} documents") as advance:
                done = await run_rerank(ctx, req, progress=advance)
            if show_usage:
                report_spend(ctx, term)
            return done

    answer = asyncio.run(run())
    if json_out:
        term.json(answer)
    elif term.out_tty:
        term.table(["rank", "score", "line", "text"],
                   [[str(rank), f"{r['relevance_score']:.4f}", str(docs[r["index"]][0]), docs[r["index"]][1]]
                    for rank, r in enumerate(answer["results"], start=1)],
                   title=f"{answer['model']} · {query}")
    else:
        for r in answer["results"]:
            term.line(f"{r['relevance_score']:.6f}\t{docs[r['index']][1]}")


def register(app: typer.Typer) -> None:
    app.command("rerank", help=HELP, epilog=EPILOG)(rerank)
