"""The interactive chat's commands and message assembly (cli.session), driven by typed-in entries."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.cli.answer import Reply
from cfai_cli.cli.attach import read_attachment
from cfai_cli.cli.render import Terminal
from cfai_cli.cli.session import (
    EXIT,
    Session,
    Spend,
    TurnResult,
    fenced_lines,
    help_text,
    open_fence,
    unfence,
)
from cfai_cli.settings import load_settings


def new_session(**kwargs: Any) -> tuple[Session, io.StringIO]:
    err = io.StringIO()
    term = Terminal(stdout=io.StringIO(), stderr=err, stdin=io.StringIO(), environ={})
    settings = load_settings({"offline": True})
    session = Session(model="gpt-4o-mini", term=term,
                      resolve=lambda name: settings.routing.resolve(name, settings.aliases),
                      attach=lambda source: read_attachment(source, io.StringIO()), **kwargs)
    return session, err


def answered(session: Session, text: str, content: str = "ok", spend: Spend | None = None) -> None:
    turn = session.turn(text)
    session.finish(TurnResult(user={"role": "user", "content": turn.text}, reply=Reply(content=content),
                              model=turn.model, spend=spend or Spend()))


def test_plain_text_is_a_message_and_blank_is_nothing() -> None:
    session, _ = new_session()
    assert session.handle("hello there") == "hello there"
    assert session.handle("   ") is None
    assert session.handle("line one\nline two\n") == "line one\nline two"  # a pasted block, one message


def test_double_slash_sends_a_literal_slash() -> None:
    session, err = new_session()
    assert session.handle("//etc/hosts is what?") == "/etc/hosts is what?"
    assert err.getvalue() == ""


@pytest.mark.parametrize("word", ["/bogus", "/usr/bin/env is?", "/Model x"])
def test_an_unknown_command_shows_help_and_is_not_sent(word: str) -> None:
    session, err = new_session()
    assert session.handle(word) is None
    assert f"unknown command {word.split()[0]}" in err.getvalue()
    assert "/attach FILE|URL" in err.getvalue() and "//" in err.getvalue()


def test_exit_and_quit() -> None:
    session, _ = new_session()
    assert session.handle("/exit") is EXIT
    assert session.handle("  /quit ") is EXIT


def test_triple_quote_blocks() -> None:
    assert open_fence('"""') and open_fence('"""\nfirst') and not open_fence('"""\nfirst\n"""')
    assert not open_fence("plain") and not open_fence('text """')
    assert unfence('"""\n/not a command\n  indented\n"""') == "/not a command\n  indented"
    assert unfence("plain") is None
    session, _ = new_session()
    assert session.handle('"""\n/model is a word here\n"""') == "/model is a word here"
    assert session.handle('"""\n"""') is None


def test_fenced_lines_gathers_a_block_from_a_line_reader() -> None:
    lines = iter(["one", '"""', "a", "", "b", '"""', "two", '"""', "unclosed"])

    def read() -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    entry = fenced_lines(read)
    assert entry() == "one"
    assert unfence(entry()) == "a\n\nb"
    assert entry() == "two"
    assert unfence(entry()) == "unclosed"  # Ctrl-D inside a block sends what was typed
    with pytest.raises(EOFError):
        entry()


def test_model_is_validated_like_dash_m() -> None:
    session, err = new_session()
    session.handle("/model")
    assert "model: gpt-4o-mini" in err.getvalue()
    session.handle("/model not a model!")
    assert "cfai:" in err.getvalue() and "The model stays gpt-4o-mini" in err.getvalue()
    assert session.model == "gpt-4o-mini" and not session.chosen
    session.handle("/model gpt-4o")
    assert session.model == "gpt-4o" and session.chosen
    assert "→ @cf/" in err.getvalue()
    assert session.turn("hi").model == "gpt-4o"


def test_system_sets_replaces_and_shows() -> None:
    session, err = new_session()
    session.handle("/system")
    assert "no system prompt" in err.getvalue()
    session.handle("/system Answer in French.")
    session.handle("/system Answer in German.")
    assert session.turn("hi").system == "Answer in German."
    session.handle("/system")
    assert "system: Answer in German." in err.getvalue()


def test_attach_goes_with_the_next_message_only(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the secret word is kumquat\n")
    session, err = new_session()
    session.handle(f"/attach {notes}")
    assert "attached notes.txt" in err.getvalue()
    turn = session.turn("what is the word?")
    assert [a.name for a in turn.attachments] == ["notes.txt"]
    answered(session, "what is the word?")
    assert session.turn("and now?").attachments == []


@pytest.mark.parametrize(("source", "message"), [
    ("missing.txt", "cannot read"), ("-", "stdin, which is this chat"), ("DIR", "is a directory"),
    ("BIN", "cfai chat reads text, images and audio"),
])
def test_attach_errors_are_messages(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "blob.bin").write_bytes(b"PK\x03\x04" + bytes(range(256)))
    source = {"DIR": str(tmp_path), "BIN": str(tmp_path / "blob.bin")}.get(source, source)
    session, err = new_session()
    session.handle(f"/attach {source}")
    assert message in err.getvalue()
    assert session.attachments == []


def test_clear_forgets_the_conversation_but_keeps_model_and_system(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    session, err = new_session(system="be brief")
    answered(session, "one")
    session.handle(f"/attach {tmp_path / 'a.txt'}")
    session.handle("/reset")  # the old name still works
    turn = session.turn("two")
    assert turn.history == [] and turn.attachments == [] and turn.system == "be brief" and turn.epoch == 1
    assert "forgotten" in err.getvalue()


def test_usage_adds_up_the_answered_turns() -> None:
    session, err = new_session()
    answered(session, "one", spend=Spend(10, 20, 1.5, False))
    answered(session, "two", spend=Spend(40, 5, None, False))
    answered(session, "three", spend=Spend(1, 1, 0.25, True))
    session.handle("/usage")
    assert "usage: 51 prompt + 26 completion tokens · 1.75 neurons (estimated)" in err.getvalue()
    assert "(3 answers this session)" in err.getvalue()


def test_usage_with_no_price_says_so() -> None:
    session, err = new_session()
    session.handle("/usage")
    assert "usage: 0 prompt + 0 completion tokens · neurons unknown" in err.getvalue()


def test_save_markdown_and_json(tmp_path: Path) -> None:
    session, err = new_session(system="be brief")
    answered(session, "hello", "hi there")
    session.handle(f"/save {tmp_path / 'chat.md'}")
    session.handle(f"/save {tmp_path / 'chat.json'}")
    markdown = (tmp_path / "chat.md").read_text()
    assert "## system\n\nbe brief" in markdown and "## user\n\nhello" in markdown
    assert "## assistant\n\nhi there" in markdown
    body = json.loads((tmp_path / "chat.json").read_text())
    assert body == {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"}]}
    assert "saved 1 exchange(s)" in err.getvalue()


def test_save_refuses_to_overwrite_unless_bang(tmp_path: Path) -> None:
    target = tmp_path / "chat.md"
    target.write_text("precious")
    session, err = new_session()
    answered(session, "hello")
    session.handle(f"/save {target}")
    assert target.read_text() == "precious"
    assert f"{target} exists: /save! {target} overwrites it" in err.getvalue()
    session.handle(f"/save! {target}")
    assert "## user\n\nhello" in target.read_text()


@pytest.mark.parametrize(("name", "message"), [
    ("", "/save needs a file name"), ("chat.txt", "end the name with .md"),
    ("no/such/dir/chat.md", "cannot save to"),
])
def test_save_errors_are_messages(tmp_path: Path, name: str, message: str) -> None:
    session, err = new_session()
    session.handle(f"/save {tmp_path / name if name else ''}".rstrip())
    assert message in err.getvalue()
    assert os.listdir(tmp_path) == [] or name.startswith("no/")


def test_help_lists_every_command() -> None:
    session, err = new_session()
    session.handle("/help")
    for name in ("/model", "/system", "/attach", "/clear", "/save", "/usage", "/help", "/exit"):
        assert name in err.getvalue()
    assert err.getvalue().strip() == help_text()
