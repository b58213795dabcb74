"""The interactive chat's line editor (prompt_toolkit): history kept in a file, pastes, `\"\"\"` blocks, Tab.

Imports prompt_toolkit, so it is imported only when an interactive chat starts on a terminal (never by
`cfai --help`). Enter sends the whole buffer, so a bracketed paste of several lines is one message; inside
an unclosed `\"\"\"` block Enter adds a line; Alt-Enter (Esc then Enter) always adds one. The history file
is shared by every session, created 0600, and trimmed to its newest MAX_ENTRIES entries when a session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output

from cfai_cli.cli.session import ALIASES, COMMANDS, open_fence

HISTORY_FILE = "chat-history"
MAX_ENTRIES = 1000
MAX_ENTRY_CHARS = 20_000  # a longer paste is sent but not remembered: the file stays small to load


class BoundedHistory(FileHistory):
    """prompt_toolkit's history file (same format, so its own tools read it) with a cap on what it keeps."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before prompt_toolkit appends to it: what people type can be private.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
        super().__init__(path)
        self.path = path
        self._trim()

    def _trim(self) -> None:
        newest_first = list(super().load_history_strings())
        if len(newest_first) <= MAX_ENTRIES:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for entry in reversed(newest_first[:MAX_ENTRIES]):
                file.write("\n# trimmed\n" + "".join(f"+{line}\n" for line in entry.split("\n")))
        os.replace(tmp, self.path)

    def load_history_strings(self) -> Iterable[str]:
        for i, entry in enumerate(super().load_history_strings()):
            if i >= MAX_ENTRIES:
                return
            yield entry

    def store_string(self, string: str) -> None:
        if len(string) <= MAX_ENTRY_CHARS:
            with contextlib.suppress(OSError):  # a full disk costs the entry its place in the file, not the chat
                super().store_string(string)


class SlashCompleter(Completer):
    """Tab after `/`: the commands; after `/model `: model names; after `/attach ` or `/save `: paths."""

    def __init__(self, models: Callable[[], list[str]]) -> None:
        self.models = models
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        word, space, rest = text.partition(" ")
        if not space:
            for name in [*COMMANDS, *ALIASES]:
                if name.startswith(text):
                    yield Completion(name, start_position=-len(text))
            return
        if word == "/model":
            for name in self.models():
                if name.startswith(rest):
                    yield Completion(name, start_position=-len(rest))
        elif word in ("/attach", "/save", "/save!"):
            yield from self.paths.get_completions(Document(rest, len(rest)), complete_event)


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if open_fence(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return keys


@contextlib.contextmanager
def no_echo(fd: int) -> Iterator[None]:
    """While an answer streams: the terminal does not echo what is typed (kept for the next prompt) nor the
    `^C` of Ctrl-C, which would land inside the live answer and leave a stale copy of it on screen."""
    try:
        import termios
    except ImportError:  # Windows: no termios, and no such echo either
        yield
        return
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


CTRL_C = "\x03"  # what `read_async` returns for Ctrl-C at the prompt (raised as KeyboardInterrupt by `reader`)


def open_history(path: Path, warn: Callable[[str], None]) -> History:
    """The history file, or (with a warning) a history of this session only when the file cannot be used."""
    try:
        return BoundedHistory(path)
    except OSError as exc:
        warn(f"cannot keep the chat history in {path}: {exc.strerror or exc}; this session's is not saved.")
        return InMemoryHistory()


def reader(runner: asyncio.Runner, history: Path, models: Callable[[], list[str]], *, color: bool,
           warn: Callable[[str], None] = lambda message: None, input: Input | None = None,
           output: Output | None = None) -> Callable[[], str]:
    """A read() for cli.interactive's loop: one entry per call; KeyboardInterrupt on Ctrl-C, EOFError on Ctrl-D.

    The prompt runs on the session's own event loop (`runner`), the one the answers run on. `input` and
    `output` default to the terminal (tests pass a pipe and a dummy)."""
    session: PromptSession[str] = PromptSession(
        input=input, output=output,
        history=open_history(history, warn), multiline=True, key_bindings=_bindings(),
        completer=SlashCompleter(models), complete_while_typing=False,
        prompt_continuation=lambda width, line, wrap: "… ".rjust(width),
    )
    message = FormattedText([("bold ansicyan", "› ")] if color else [("", "› ")])

    async def read_async() -> str | None:
        # Ctrl-C and Ctrl-D come back as values: a KeyboardInterrupt raised inside the loop would stop it.
        try:
            return await session.prompt_async(message)
        except KeyboardInterrupt:
            return CTRL_C
        except EOFError:
            return None

    def read() -> str:
        entry = runner.run(read_async())
        if entry is None:
            raise EOFError
        if entry == CTRL_C:
            raise KeyboardInterrupt
        return entry

    return read
