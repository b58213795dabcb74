"""`cfai embed`: embeddings for texts from arguments, a file or stdin, and `--similar` ranking of a corpus.

Imports typer and cli.common at the top; service, core and render inside the command (cheap start-up).
The request is the same validated EmbeddingRequest the proxy uses, through the same service function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from cfai_cli.core.defaults import DEFAULT_EMBEDDING_MODEL

HELP = """Turn texts into embedding vectors, or rank a corpus by similarity to a query.

Texts come from the arguments, from --file (one text per line), or from stdin lines. Piped output is
NDJSON, one {"index", "text", "embedding"} object per line; --json prints the OpenAI list object instead.
With --similar, the texts are ranked by cosine similarity to the query.
"""

EPILOG = """Examples:

  cfai embed "first text" "second text" > vectors.ndjson

  cfai embed --file notes.txt --json | jq '.data | length'

  cfai embed --similar "how do I reset my password?" --file faq.txt --top 3
"""


def _read_lines(text: str, source: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line."""
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise typer.BadParameter(f"{source} has no text to embed.")
    return lines


def gather_texts(texts: list[str] | None, file: Path | None, stdin_text: str | None,
                 file_text: str | None = None) -> list[tuple[int, str]]:
    """Texts with their position: argument number, or line number in the file (its text, read by the
    caller through cli.textin) or stdin."""
    if file is not None and texts:
        raise typer.BadParameter("give texts as arguments or with --file, not both.", param_hint="--file")
    if file is not None:
        return _read_lines(file_text or "", str(file))
    if texts:
        return list(enumerate(texts, start=1))
    if stdin_text is not None:
        return _read_lines(stdin_text, "stdin")
    raise typer.BadParameter("nothing to embed: give texts as arguments, --file, or pipe lines on stdin.")


def embed(
    invocation: typer.Context,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed.", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", autocompletion=complete_model,
                                       help="An OpenAI alias (text-embedding-3-small) or a "
                                       "Workers AI id (@cf/baai/bge-m3).")] = DEFAULT_EMBEDDING_MODEL,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Embed each non-blank line of this file.",
                                              show_default=False)] = None,
    similar: Annotated[str | None, typer.Option("--similar", help="Rank the texts by similarity to this query.",
                                                show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="With --similar: how many matches to show.")] = 5,
    dimensions: Annotated[int | None, typer.Option("--dimensions", min=1, show_default=False,
                                                   help="Shorter vectors: the first N values, re-normalised "
                                                        "(at most the model's own size).")] = None,
    json_out: JsonOption = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
    show_usage: UsageOption = False,
) -> None:
    import asyncio

    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.embeddings import EmbeddingList, EmbeddingRequest
    from cfai_cli.core.translate.embeddings import rank_by_similarity
    from cfai_cli.service.context import open_context
    from cfai_cli.service.embeddings import create_embeddings

    term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    from cfai_cli.cli.textin import read_file_text, read_stdin_text

    piped = read_stdin_text(term, command="cfai embed") if not term.in_tty and not texts and file is None else None
    content = read_file_text(file, term, command="cfai embed", param="--file") if file and not texts else None
    items = gather_texts(texts, file, piped, content)
    inputs = [text for _, text in items] + ([similar] if similar is not None else [])
    body: dict[str, Any] = {"model": model, "input": inputs}
    if dimensions is not None:
        body["dimensions"] = dimensions
    req = validate_request(EmbeddingRequest, body)

    async def run() -> EmbeddingList:
        async with open_context(settings) as ctx:
            with term.progress(len(inputs), f"embedding {len(inputs)} texts") as advance:
                result = await create_embeddings(ctx, req, progress=advance)
            if show_usage:
                report_spend(ctx, term)
            return result

    result = asyncio.run(run())
    # The CLI asks for neither base64 nor JSON text, so every embedding is a list of floats.
    vectors = [item["embedding"] for item in result["data"] if isinstance(item["embedding"], list)]
    if similar is not None:
        query = vectors.pop()
        ranked = rank_by_similarity(query, vectors, top)
        matches = [{"rank": r, "line": items[i][0], "score": round(score, 6), "text": items[i][1]}
                   for r, (i, score) in enumerate(ranked, start=1)]
        if json_out:
            term.json(matches)
        else:
            term.table(["rank", "score", "line", "text"],
                       [[str(m["rank"]), f"{m['score']:.4f}", str(m["line"]), str(m["text"])] for m in matches],
                       title=f"closest to: {similar}")
        return
    if json_out:
        term.json(result)
    elif term.out_tty:
        term.table(["#", "text", "dims", "vector"],
                   [[str(i), text[:60], str(len(v)), "[" + ", ".join(f"{x:.4f}" for x in v[:4]) + ", …]"]
                    for i, ((_, text), v) in enumerate(zip(items, vectors, strict=True))],
                   title=f"{result['model']} · {result['usage']['prompt_tokens']} tokens")
    else:
        for i, ((_, text), vector) in enumerate(zip(items, vectors, strict=True)):
            term.json({"index": i, "text": text, "embedding": vector}, compact=True)


def register(app: typer.Typer) -> None:
    app.command("embed", help=HELP, epilog=EPILOG)(embed)
