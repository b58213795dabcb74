"""Terminal output for every command: the only module in cfai that prints.

Data (answers, JSON, keys, tables) goes to stdout; everything else (errors, warnings, reasoning, usage,
spinners) to stderr. Each stream gets rich formatting and colour only when it is a terminal and NO_COLOR is
unset; piped output is plain text, byte for byte what the model or the API said. Imports rich and stdlib.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.status import Status


@dataclass(frozen=True)
class OutputOptions:
    """How much and how plainly a command writes: decided once by `cfai`'s root callback from -q and the
    environment, kept on the Typer context (`ctx.obj`), and handed to each Terminal the command makes. The
    root's other option for every command, `cfai --offline`, rides along (cli.common.offline_requested)."""

    quiet: bool = False  # -q / CFAI_QUIET: data and errors only
    no_color: bool = False  # NO_COLOR
    offline: bool = False  # `cfai --offline` (CFAI_OFFLINE is read by the settings)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, quiet: bool = False,
                     offline: bool = False) -> OutputOptions:
        return cls(quiet=quiet or bool(environ.get("CFAI_QUIET")), no_color=bool(environ.get("NO_COLOR")),
                   offline=offline)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or unusual streams are not terminals
        return False


class Terminal:
    """stdout and stderr, each rendered rich or plain depending on whether it is a terminal."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 stdin: IO[str] | None = None, environ: Mapping[str, str] | None = None,
                 options: OutputOptions | None = None) -> None:
        # Looked up at construction, not import: test runners swap sys.stdout per invocation.
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.stdin = stdin if stdin is not None else sys.stdin
        if options is None:  # outside a command (errors, --version) or in tests: the environment's
            options = OutputOptions.from_environ(os.environ if environ is None else environ)
        self.no_color = options.no_color
        self.quiet = options.quiet  # -q: data and errors only
        self.out_tty = _isatty(self.stdout)
        self.err_tty = _isatty(self.stderr)
        self.in_tty = _isatty(self.stdin)

    @cached_property
    def out(self) -> Console:
        return self._console(self.stdout, self.out_tty)

    @cached_property
    def err(self) -> Console:
        return self._console(self.stderr, self.err_tty)

    def _console(self, file: IO[str], tty: bool) -> Console:
        from rich.console import Console

        return Console(file=file, force_terminal=tty, no_color=self.no_color or not tty, highlight=False,
                       emoji=False, markup=False, soft_wrap=not tty)

    # ---- data on stdout ----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Raw text to stdout as it arrives (streamed answers)."""
        self.stdout.write(text)
        self.stdout.flush()

    def write_bytes(self, data: bytes) -> None:
        """Binary data (an image, audio) to stdout, for pipes and redirects."""
        self.stdout.flush()
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            raise TypeError("stdout cannot take bytes")
        buffer.write(data)
        buffer.flush()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def json(self, value: Any, *, compact: bool = False) -> None:
        """One JSON document on stdout; compact means one line (NDJSON)."""
        if compact:
            self.line(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        else:
            self.line(json.dumps(value, ensure_ascii=False, indent=2))

    def markdown(self, text: str) -> None:
        """A whole answer: rendered Markdown on a terminal, the exact text when piped."""
        if not self.out_tty:
            self.write(text if text.endswith("\n") else text + "\n")
            return
        from rich.markdown import Markdown

        self.out.print(Markdown(text))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
        """A rich table on a terminal; tab-separated lines when piped (for cut/awk), the header row first
        (so a reader knows the columns; `tail -n +2` skips it). A column with an empty header is decoration
        for eyes (usage's bars) and is left out of piped output."""
        if not self.out_tty:
            keep = [i for i, header in enumerate(headers) if header]
            for row in [headers, *rows]:
                self.line("\t".join(row[i].replace("\t", " ").replace("\n", " ") for i in keep if i < len(row)))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers, title=title, header_style="bold", title_justify="left")
        for row in rows:
            table.add_row(*map(Text, row))  # cells are data, never rich markup (a model named "[red]…")
        self.out.print(table)

    def heading(self, text: str) -> None:
        """A heading over a block of data (`cfai logs`): bold on a terminal, `## text` when piped."""
        if not self.out_tty:
            self.line(f"## {text}")
            return
        from rich.text import Text

        self.out.print(Text(text, style="bold cyan"), soft_wrap=True)  # Text: never markup, escapes stripped

    def tool_call(self, name: str, arguments: str) -> None:
        """A tool call the model asked for is part of the answer, so it goes to stdout."""
        if self.out_tty:
            from rich.text import Text

            self.out.print(Text.assemble(("tool call: ", "bold cyan"), f"{name}({arguments})"), soft_wrap=True)
        else:
            self.line(f"tool call: {name}({arguments})")

    # ---- everything else on stderr -----------------------------------------------------------------

    def _err_line(self, text: str, style: str = "") -> None:
        if not self.err_tty and text.isprintable():
            # On a pipe rich writes such a line as it is; importing rich only to do that was ~30 ms of every
            # one-shot command that prints a note and of `cfai serve`'s start-up. Anything with a control
            # character still goes through rich, which strips what a terminal would act on.
            self.stderr.write(text + "\n")
            return
        from rich.text import Text

        # soft_wrap keeps a message on one line however narrow the terminal or pipe is.
        self.err.print(Text(text, style=style), soft_wrap=True)

    def error(self, message: str) -> None:
        self._err_line(f"cfai: {message}", "bold red")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._err_line(f"cfai: {message}", "bold yellow")

    def note(self, message: str) -> None:
        if not self.quiet:
            self._err_line(message, "dim")

    def offline_warning(self) -> None:
        self.warn("OFFLINE: answers are canned by the built-in Workers AI emulator, not generated by a real model.")

    def reasoning(self, text: str) -> None:
        """Reasoning text streams dim to stderr, never into stdout."""
        if self.quiet:
            return
        if self.err_tty and not self.no_color:
            self.stderr.write(f"\x1b[2m{text}\x1b[0m")
        else:
            self.stderr.write(text)
        self.stderr.flush()

    def end_err_line(self) -> None:
        if self.quiet:
            return
        self.stderr.write("\n")
        self.stderr.flush()

    def usage(self, model: str, usage: Mapping[str, Any] | None) -> None:
        """The model and token counts, for a person watching (stderr terminal only)."""
        if not self.err_tty:
            return
        if usage:
            self.note(f"{model} · {usage.get('prompt_tokens', 0)} prompt + "
                      f"{usage.get('completion_tokens', 0)} completion tokens")
        else:
            self.note(model)

    def spend(self, prompt_tokens: int, completion_tokens: int, neurons: float | None, estimated: bool) -> None:
        """`--usage`: tokens, neurons and their list-price cost on stderr (also when piped: it was asked for)."""
        if neurons is None:
            cost = "neurons unknown (no Workers AI price for this model)"
        else:
            cost = f"{neurons:,.2f} neurons{' (estimated)' if estimated else ''} · ${neurons * 0.011 / 1000:.6f}"
        self._err_line(f"usage: {prompt_tokens} prompt + {completion_tokens} completion tokens · {cost}")

    @contextlib.contextmanager
    def waiting(self, message: str) -> Iterator[None]:
        """A spinner on a stderr terminal while nothing has arrived yet; nothing when piped."""
        status = self.spinner(message)
        try:
            yield
        finally:
            if status is not None:
                status.stop()

    @contextlib.contextmanager
    def progress(self, total: int, message: str) -> Iterator[Callable[[int], None]]:
        """A progress bar on a stderr terminal; yields `advance(n)`. Nothing is drawn when piped."""
        if not self.err_tty or self.quiet:
            yield lambda n: None
            return
        from rich.progress import Progress

        with Progress(console=self.err, transient=True) as bar:
            task = bar.add_task(message, total=total)
            yield lambda n: bar.advance(task, n)

    @contextlib.contextmanager
    def batch_progress(self, name: str, *, every: float = 5.0,
                       clock: Callable[[], float] | None = None) -> Iterator[Callable[[str, int, int, int], None]]:
        """A batch's progress on stderr; yields `update(status, completed, failed, total)`. On a terminal a bar
        with the counts and the time left; piped, a plain line when the counts or status change (at most one
        per `every` seconds, the last always); nothing with -q."""
        if self.quiet:
            yield lambda status, completed, failed, total: None
            return
        if not self.err_tty:
            import time

            now = clock or time.monotonic
            last: list[Any] = [None, -every]

            def plain(status: str, completed: int, failed: int, total: int) -> None:
                shown = (status, completed, failed, total)
                final = status in ("completed", "failed", "expired", "cancelled")
                if shown != last[0] and (final or now() - last[1] >= every):
                    last[:] = [shown, now()]
                    self.stderr.write(f"{name}: {status}, {completed + failed}/{total} done, {failed} failed\n")
                    self.stderr.flush()

            yield plain
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
                      console=self.err, transient=True) as bar:
            task = bar.add_task(name, total=None, failed=0)

            def draw(status: str, completed: int, failed: int, total: int) -> None:
                bar.update(task, description=f"{name} {status}", completed=completed + failed,
                           total=total or None, failed=failed)

            yield draw

    def spinner(self, message: str) -> Status | None:
        if not self.err_tty or self.quiet:
            return None
        status = self.err.status(message, spinner="dots")
        status.start()
        return status

    def prompt(self, text: str) -> str:
        """Read one line for the interactive chat without a line editor (stdout is not a terminal: on one,
        cli.lineedit reads instead); raises EOFError on Ctrl-D."""
        self.stderr.write(text)
        self.stderr.flush()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


class _MarkdownTail:
    """The last screenful of the Markdown received so far, for the live region while an answer streams.

    A live region taller than the terminal cannot be redrawn (lines scrolled off stay behind, duplicated),
    so it follows the tail; when the answer ends the region is cleared and the whole answer printed once.
    Parsed only when Live refreshes, not on every delta.
    """

    def __init__(self) -> None:
        self.text = ""

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.markdown import Markdown
        from rich.segment import Segment

        lines = console.render_lines(Markdown(self.text), options, pad=False)
        for line in lines[-max(console.size.height - 1, 1):]:
            yield from line
            yield Segment.line()


class AnswerPrinter:
    """Shows one streamed answer: live Markdown on a terminal, raw text as it arrives when piped.

    Reasoning goes to stderr. On a terminal, reasoning that arrives after the answer started is held
    back until the live display closes, because writing around a live region garbles it.
    """

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self._status = term.spinner("waiting for the model…")
        self._live: Live | None = None
        self._doc = _MarkdownTail()
        self._in_reasoning = False
        self._reasoning_ended_line = False
        self._late_reasoning: list[str] = []
        self.content = ""

    def _quiet(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def reasoning(self, text: str) -> None:
        self._quiet()
        if not self._in_reasoning and not self._late_reasoning:
            # Models often open reasoning and answers with blank lines; on screen they are only noise.
            text = text.lstrip("\n")
            if not text:
                return
        if self._live is not None:
            self._late_reasoning.append(text)
            return
        self._in_reasoning = True
        self._reasoning_ended_line = text.endswith("\n")
        self.term.reasoning(text)

    def _end_reasoning(self) -> None:
        if self._in_reasoning:
            if not self._reasoning_ended_line:
                self.term.end_err_line()
            self._in_reasoning = False

    def text(self, text: str) -> None:
        self._quiet()
        if not self.content:
            text = text.lstrip("\n")
            if not text:
                return
        self._end_reasoning()
        self.content += text
        if not self.term.out_tty:
            self.term.write(text)
            return
        if self._live is None:
            from rich.live import Live

            # No stdout/stderr redirection: reasoning must stay on stderr, never mixed into the answer.
            self._live = Live(self._doc, console=self.term.out, refresh_per_second=8, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._doc.text = self.content

    def close(self) -> None:
        """Stop spinners and the live region and end the answer's last line (also on cancel)."""
        self._quiet()
        self._end_reasoning()
        if self._live is not None:
            self._live.stop()
            self._live = None
            self.term.markdown(self.content)
        elif self.content and not self.content.endswith("\n"):
            self.term.write("\n")
        if self._late_reasoning:
            self.term.reasoning("".join(self._late_reasoning))
            self.term.end_err_line()
            self._late_reasoning.clear()
