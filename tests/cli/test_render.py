"""Terminal rendering rules: plain and exact when piped, colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import io
import re

import pytest

from cfai_cli.cli.render import AnswerPrinter, Terminal


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_output_is_plain_and_exact() -> None:
    out, err = io.StringIO(), io.StringIO()
    term = Terminal(stdout=out, stderr=err, stdin=io.StringIO(), environ={})
    term.markdown("# Title\n\n**bold** [link](x)")
    term.error("bad [red]thing[/red]")
    term.table(["a", "b"], [["1", "two\tparts"]])
    term.table(["name", "", "n"], [["x", "███···", "3"]])  # an unnamed column is a bar: not piped
    assert out.getvalue() == "# Title\n\n**bold** [link](x)\na\tb\n1\ttwo parts\nname\tn\nx\t3\n"
    assert err.getvalue() == "cfai: bad [red]thing[/red]\n"


def test_colour_on_a_terminal_unless_no_color() -> None:
    coloured = TTY()
    Terminal(stdout=TTY(), stderr=coloured, stdin=io.StringIO(), environ={}).error("boom")
    assert "\x1b[" in coloured.getvalue()
    for environ in ({"NO_COLOR": "1"},):
        out, err = TTY(), TTY()
        term = Terminal(stdout=out, stderr=err, stdin=io.StringIO(), environ=environ)
        term.error("boom")
        term.reasoning("thinking")
        term.markdown("**bold**")
        assert "\x1b[3" not in err.getvalue() + out.getvalue()  # no colours (bold/dim are not colour)
        assert "\x1b[2m" not in err.getvalue()


def test_long_errors_stay_on_one_line() -> None:
    err = TTY()
    Terminal(stdout=TTY(), stderr=err, stdin=io.StringIO(), environ={"NO_COLOR": "1"}).error("x" * 500)
    assert err.getvalue().count("\n") == 1


def test_answer_printer_piped_streams_text_and_keeps_reasoning_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = AnswerPrinter(Terminal(stdout=out, stderr=err, stdin=io.StringIO(), environ={}))
    printer.reasoning("\nhmm, ")
    printer.reasoning("let me see")
    printer.text("\n\nHello")
    printer.text(", world")
    printer.close()
    assert out.getvalue() == "Hello, world\n"
    assert err.getvalue() == "hmm, let me see\n"


def test_the_live_region_follows_the_tail_and_the_whole_answer_is_printed_at_the_end() -> None:
    from rich.console import Console

    from cfai_cli.cli.render import _MarkdownTail

    tail = _MarkdownTail()
    tail.text = "\n\n".join(f"paragraph {i}" for i in range(30))
    screen = io.StringIO()
    Console(file=screen, width=40, height=6, force_terminal=False).print(tail)
    shown = screen.getvalue().split()
    assert "29" in shown and "0" not in shown
    assert screen.getvalue().count("\n") <= 6

    out = TTY()
    printer = AnswerPrinter(Terminal(stdout=out, stderr=TTY(), stdin=io.StringIO(), environ={"NO_COLOR": "1"}))
    printer.text("# Title\n\n")
    printer.text("the **whole** answer")
    printer.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert plain.rstrip().endswith("the whole answer") and "**" not in plain  # rendered, not raw Markdown


def test_reasoning_ending_its_own_line_gets_no_blank_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = AnswerPrinter(Terminal(stdout=out, stderr=err, stdin=io.StringIO(), environ={}))
    printer.reasoning("step one\n")
    printer.text("answer")
    printer.close()
    assert err.getvalue() == "step one\n" and out.getvalue() == "answer\n"


def test_batch_progress_piped_is_plain_lines_throttled_but_the_last_always() -> None:
    err, clock = io.StringIO(), [0.0]
    term = Terminal(stdout=io.StringIO(), stderr=err, stdin=io.StringIO(), environ={})
    with term.batch_progress("b1", every=5.0, clock=lambda: clock[0]) as update:
        update("validating", 0, 0, 0)
        update("in_progress", 1, 0, 4)  # within 5 s of the last line: not shown
        clock[0] = 6.0
        update("in_progress", 2, 1, 4)
        update("in_progress", 2, 1, 4)  # unchanged
        update("completed", 3, 1, 4)  # final: shown at once
    assert err.getvalue().splitlines() == ["b1: validating, 0/0 done, 0 failed", "b1: in_progress, 3/4 done, 1 failed",
                                           "b1: completed, 4/4 done, 1 failed"]
    quiet = io.StringIO()
    with Terminal(stdout=io.StringIO(), stderr=quiet, environ={"CFAI_QUIET": "1"}).batch_progress("b") as update:
        update("completed", 1, 0, 1)
    assert quiet.getvalue() == ""


def test_batch_progress_on_a_terminal_is_a_bar_with_counts() -> None:
    err = TTY()
    term = Terminal(stdout=TTY(), stderr=err, stdin=io.StringIO(), environ={})
    with term.batch_progress("b2") as update:
        update("in_progress", 5, 2, 10)
    drawn = err.getvalue()  # the last frame is drawn as the bar closes (then wiped: transient)
    assert "b2 in_progress" in drawn and "7/10" in drawn and "2 failed" in drawn


@pytest.mark.parametrize("text", ["cfai: OFFLINE: answers are canned", "base URL: http://127.0.0.1:3000/v1 · auth",
                                  "wide 漢字, emoji 🎉 :smile: and [red]markup[/red]", "  spaces around  ", "x" * 300,
                                  "", "zero\u200bwidth", "bell\x07 and\rcarriage", "tab\there", "esc \x1b[31mred"])
def test_a_line_on_a_pipe_is_what_rich_would_write(text: str) -> None:
    """Notes on a pipe skip rich when it would write them unchanged (cli.render._err_line); the rest go through it."""
    from rich.text import Text

    fast, slow = io.StringIO(), io.StringIO()
    Terminal(stderr=fast).note(text)
    Terminal(stderr=slow).err.print(Text(text, style="dim"), soft_wrap=True)
    assert fast.getvalue() == slow.getvalue()
