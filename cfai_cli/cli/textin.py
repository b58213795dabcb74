"""Text that a command reads from stdin or a file, whatever bytes arrive: never a UnicodeDecodeError.

Imports the standard library and errors; core.sniff when there are bytes to look at. Text that is not
UTF-8 is decoded with replacement characters and a one-line warning; images, audio, PDFs and other binary
data are refused with one `cfai:` line naming what arrived and what the command reads (`cfai chat` takes
images and audio itself, through cli.attach).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfai_cli.errors import InvalidRequest

if TYPE_CHECKING:
    from cfai_cli.cli.render import Terminal


def stdin_bytes(stdin: Any, limit: int | None = None) -> bytes:
    """stdin's bytes (its text, encoded, when a test runner gives only a text stream)."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is not None:
        return bytes(buffer.read() if limit is None else buffer.read(limit))
    text = stdin.read()
    return text.encode("utf-8", errors="surrogateescape") if isinstance(text, str) else bytes(text)


def as_text(data: bytes, what: str, term: Terminal, *, command: str) -> str:
    """`data` (from `what`: "stdin" or a file name) as text, or a refusal saying what to do."""
    from cfai_cli.core.sniff import decode_text, sniff

    kind = sniff(data)
    if kind.category != "text":
        hint = "pdftotext FILE - extracts a PDF's text" if kind.mime == "application/pdf" else (
            "cfai chat -a takes images and audio" if kind.category in ("image", "audio") else
            "convert it to text first")
        raise InvalidRequest(f"{what} is {kind.label}; {command} reads text ({hint}).", param=what,
                             code="not_text")
    text, replaced = decode_text(data)
    if replaced:
        term.warn(f"{what} is not valid UTF-8; undecodable bytes were replaced with U+FFFD (iconv -f LATIN1 "
                  "-t UTF-8 converts Latin-1 text exactly).")
    return text


def read_stdin_text(term: Terminal, *, command: str) -> str:
    return as_text(stdin_bytes(term.stdin), "stdin", term, command=command)


def read_file_text(path: Path, term: Terminal, *, command: str, param: str) -> str:
    """A text file's content; an unreadable path is a usage error naming `param`."""
    import typer

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=param) from None
    return as_text(data, str(path), term, command=command)
