"""The interactive chat's state and its slash commands: each entry the user submits becomes a message to send,
a command run here, or the end of the session.

Imports the standard library, errors and cli.attach/cli.answer types (cheap); never prompt_toolkit or service:
answering is a `Backend` handed in by cli.interactive, so the commands, the `\"\"\"` blocks and the per-turn
bookkeeping are tested with typed-in lines alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cfai_cli.errors import CfaiError

if TYPE_CHECKING:
    from cfai_cli.cli.answer import Reply
    from cfai_cli.cli.attach import Attachment
    from cfai_cli.cli.render import Terminal

Message = dict[str, Any]
FENCE = '"""'

# Name -> (argument, what it does); the order is the order /help lists them in.
COMMANDS: dict[str, tuple[str, str]] = {
    "/model": ("NAME", "switch model (an alias, a Workers AI id or a route); alone: show it"),
    "/system": ("TEXT", "set or replace the system prompt; alone: show it"),
    "/attach": ("FILE|URL", "attach a file or image URL to your next message (like cfai chat -a); alone: list"),
    "/clear": ("", "forget the conversation (and pending attachments); the model and system prompt stay"),
    "/save": ("FILE", "save the conversation: .md as Markdown, .json as a chat request body; /save! overwrites"),
    "/usage": ("", "tokens, neurons and cost of this session's answers so far"),
    "/help": ("", "show this"),
    "/exit": ("", "leave (also /quit, or Ctrl-D on an empty line)"),
}
ALIASES = {"/quit": "/exit", "/reset": "/clear", "/save!": "/save"}


def help_text() -> str:
    rows = [f"  {name + (' ' + arg if arg else ''):<18} {what}" for name, (arg, what) in COMMANDS.items()]
    return "\n".join([
        "Commands:", *rows,
        "Keys: Enter sends; Alt-Enter (or Esc then Enter) adds a line; a pasted block is one message; a line",
        '  of """ opens a multi-line message until a closing """ line; Up/Down and Ctrl-R search the history;',
        "  Tab completes commands; Ctrl-C cancels an answer (or clears the line); Ctrl-D leaves.",
        "  Start a message with // to send a literal /: //etc/hosts is sent as /etc/hosts.",
    ])


def open_fence(text: str) -> bool:
    """True while `text` is a `\"\"\"` block not yet closed: Enter then adds a line instead of sending."""
    lines = text.split("\n")
    return lines[0].strip() == FENCE and not (len(lines) > 1 and lines[-1].strip() == FENCE)


def unfence(text: str) -> str | None:
    """The message inside a `\"\"\"` block (the fences dropped), or None if `text` is not one."""
    lines = text.split("\n")
    if lines[0].strip() != FENCE:
        return None
    body = lines[1:-1] if len(lines) > 1 and lines[-1].strip() == FENCE else lines[1:]
    return "\n".join(body)


def fenced_lines(read: Callable[[], str]) -> Callable[[], str]:
    """A line reader (plain input, tests) turned into an entry reader: a `\"\"\"` line gathers the lines up to
    the closing one into one entry, as the line editor does inside one prompt. Ctrl-D inside the block sends
    what was typed so far."""
    def read_entry() -> str:
        first = read()
        if first.strip() != FENCE:
            return first
        lines = [first]
        while True:
            try:
                line = read()
            except EOFError:
                return "\n".join(lines)
            lines.append(line)
            if line.strip() == FENCE:
                return "\n".join(lines)

    return read_entry


@dataclass
class Spend:
    """Tokens and neurons of the turns answered so far (`/usage`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    neurons: float | None = None  # None while no answer had a known price
    estimated: bool = False

    def add(self, other: Spend) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        if other.neurons is not None:
            self.neurons = (self.neurons or 0.0) + other.neurons
            self.estimated = self.estimated or other.estimated


@dataclass
class Turn:
    """What one message asks of the backend."""

    model: str
    system: str | None
    history: list[Message]  # the conversation before this message, without the system prompt
    text: str
    attachments: list[Attachment]
    chosen: bool  # the user picked the model (-m or /model): images do not switch it to a vision model
    epoch: int  # bumped by /clear: a backend that chains answers (Responses) starts a new chain


@dataclass
class TurnResult:
    """One answered turn: the user message as sent (attachments inlined), the reply, the model that answered
    (a vision model when images went along) and what it spent."""

    user: Message
    reply: Reply
    model: str
    spend: Spend


class Backend(Protocol):
    async def answer(self, turn: Turn) -> TurnResult: ...


EXIT = object()  # Session.handle's answer for /exit


@dataclass
class Session:
    """The conversation and what the slash commands change. `resolve` checks a model name as -m is checked
    (raises CfaiError); `attach` reads an /attach source (cli.attach.read_attachment)."""

    model: str
    term: Terminal
    resolve: Callable[[str], str]
    attach: Callable[[str], Attachment]
    system: str | None = None
    chosen: bool = False
    history: list[Message] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    spend: Spend = field(default_factory=Spend)
    turns: int = 0
    epoch: int = 0

    def handle(self, entry: str) -> str | object | None:
        """A message's text to send, EXIT, or None when the entry was a command (or blank)."""
        inside = unfence(entry)
        if inside is not None:
            return inside if inside.strip() else None  # a block is always a message, even if it starts with /
        stripped = entry.strip()
        if not stripped:
            return None
        if stripped.startswith("//"):
            return entry.lstrip()[1:].strip("\n")
        if not stripped.startswith("/"):
            return entry.strip("\n")
        word, _, arg = stripped.partition(" ")
        if "\n" in word:  # "/cmd\nmore": the command is the first line's first word
            word, _, rest = word.partition("\n")
            arg = f"{rest} {arg}".strip() if arg else rest
        name = ALIASES.get(word, word)
        if name not in COMMANDS:
            self.term.error(f"unknown command {word} (start a message with // to send a literal /)")
            self.term.note(help_text())
            return None
        if name == "/exit":
            return EXIT
        getattr(self, "_cmd_" + name[1:])(arg.strip(), overwrite=word == "/save!")
        return None

    def turn(self, text: str) -> Turn:
        return Turn(model=self.model, system=self.system, history=list(self.history), text=text,
                    attachments=list(self.attachments), chosen=self.chosen, epoch=self.epoch)

    def finish(self, result: TurnResult) -> None:
        """After each answered turn, and only then: the one place a turn is kept (a cancelled or failed turn
        never gets here, so it leaves no trace in the conversation)."""
        self.history += [result.user, {"role": "assistant", "content": result.reply.content}]
        self.attachments.clear()
        self.spend.add(result.spend)
        self.turns += 1
        if result.model != self.model:  # images switched it to a vision model: the conversation now has images
            self.model = result.model

    # ---- commands: each reports through the terminal and never raises --------------------------------

    def _cmd_help(self, arg: str, **_: bool) -> None:
        self.term.note(help_text())

    def _cmd_model(self, arg: str, **_: bool) -> None:
        if not arg:
            self.term.note(f"model: {self.model}")
            return
        try:
            resolved = self.resolve(arg)
        except CfaiError as err:
            self.term.error(f"{err.message} The model stays {self.model}.")
            return
        self.model, self.chosen = arg, True
        self.term.note(f"(model: {arg}{'' if resolved == arg else ' → ' + resolved})")

    def _cmd_system(self, arg: str, **_: bool) -> None:
        if not arg:
            self.term.note(f"system: {self.system}" if self.system else "(no system prompt; /system TEXT sets one)")
            return
        self.system = arg
        self.term.note("(system prompt set: it applies from the next message)")

    def _cmd_attach(self, arg: str, **_: bool) -> None:
        if not arg:
            names = ", ".join(a.name for a in self.attachments)
            self.term.note(f"(attached for the next message: {names})" if names else "(nothing attached)")
            return
        if arg == "-":
            self.term.error("/attach - would read stdin, which is this chat: attach a file or URL instead.")
            return
        try:
            item = self.attach(str(Path(arg).expanduser()) if not arg.startswith(("http://", "https://")) else arg)
        except CfaiError as err:
            self.term.error(err.message)
            return
        self.attachments.append(item)
        kind = item.kind.label if item.kind is not None else "a URL, fetched when sent"
        self.term.note(f"(attached {item.name} ({kind}): it goes with your next message)")

    def _cmd_clear(self, arg: str, **_: bool) -> None:
        self.history.clear()
        self.attachments.clear()
        self.epoch += 1
        self.term.note("(conversation forgotten)")

    def _cmd_usage(self, arg: str, **_: bool) -> None:
        s = self.spend
        self.term.spend(s.prompt_tokens, s.completion_tokens, s.neurons, s.estimated)
        self.term.note(f"({self.turns} answer{'' if self.turns == 1 else 's'} this session)")

    def _cmd_save(self, arg: str, *, overwrite: bool = False) -> None:
        if not arg:
            self.term.error("/save needs a file name: /save chat.md (Markdown) or /save chat.json (JSON).")
            return
        path = Path(arg).expanduser()
        suffix = path.suffix.lower()
        if suffix not in (".md", ".markdown", ".json"):
            self.term.error(f"/save {arg}: end the name with .md (Markdown) or .json (a chat request body).")
            return
        text = self.as_json() if suffix == ".json" else self.as_markdown()
        try:
            with path.open("w" if overwrite else "x", encoding="utf-8") as file:
                file.write(text)
        except FileExistsError:
            self.term.error(f"{arg} exists: /save! {arg} overwrites it.")
            return
        except OSError as exc:
            self.term.error(f"cannot save to {arg}: {exc.strerror or exc}")
            return
        self.term.note(f"(saved {len(self.history) // 2} exchange(s) to {path})")

    # ---- saving -------------------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.history]

    def as_json(self) -> str:
        """A chat request body, so `cfai chat --request FILE` (or any OpenAI client) can pick it up again."""
        return json.dumps({"model": self.model, "messages": self.messages()}, ensure_ascii=False, indent=2) + "\n"

    def as_markdown(self) -> str:
        parts = [f"# cfai chat with {self.model}\n"]
        for message in self.messages():
            parts.append(f"## {message['role']}\n\n{_text_of(message['content'])}\n")
        return "\n".join(parts)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(p.get("text", "") if p.get("type") == "text" else "*(image)*"
                           for p in content if isinstance(p, dict))
    return ""
