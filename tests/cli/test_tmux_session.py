"""A person's interactive session replayed in a real terminal (tmux): paste, \"\"\" blocks, slash commands,
Ctrl-C mid-answer, history across runs, Ctrl-D. Polls the screen with a deadline, never fixed sleeps alone.

The first session runs `cfai chat --offline`. The offline emulator hands cfai a whole stream at once, so the
second session talks to the emulator served over a real socket (CFAI_API_BASE), where `[emulator:slow]`
streams an answer slowly enough to press Ctrl-C in the middle of it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from cfai_cli.emulator import create_emulator_app

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt install tmux)")

DEADLINE = 8.0  # seconds one expected screen may take on a loaded machine


class Pane:
    """One tmux session on a private server (its own socket), running one command."""

    def __init__(self, socket: str, name: str, env: dict[str, str], status: Path) -> None:
        self.socket, self.name, self.env = socket, name, env
        self.status = status  # where the command's exit status is written when it leaves

    def tmux(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], input=input, capture_output=True,
                              env=self.env, check=True, timeout=10)
        return done.stdout.decode("utf-8", "replace")

    def start(self, command: list[str], env: dict[str, str]) -> None:
        flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        # remain-on-exit keeps the pane (its last screen) after cfai leaves; a shell writes cfai's exit status to a
        # file, since tmux does not always note a dead pane's status (seen on CI: dead, with no status, for 8 s).
        # The shell only waits: its no-op trap keeps Ctrl-C (sent to the whole foreground group) from ending it,
        # while cfai, exec'd with default signal handling, gets Ctrl-C as usual.
        wrapped = ["sh", "-c", f'trap : INT; "$@"; echo $? > {shlex.quote(str(self.status))}', "sh", *command]
        self.tmux("new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", *flags, *wrapped,
                  ";", "set-option", "-t", self.name, "remain-on-exit", "on")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.name, "-l", text)
        self.keys("Enter")

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal sends one when the user pastes (-p: the app asked for it)."""
        self.tmux("load-buffer", "-b", self.name, "-", input=text.encode())
        self.tmux("paste-buffer", "-p", "-d", "-b", self.name, "-t", self.name)

    def screen(self) -> str:
        """The screen and what scrolled off its top, whitespace runs as one space: answers are wrapped."""
        return " ".join(self.tmux("capture-pane", "-p", "-J", "-S", "-300", "-t", self.name).split())

    def wait(self, pattern: str, *, count: int = 1) -> str:
        """The screen once `pattern` (a regex) shows `count` times; fails with the screen after DEADLINE."""
        end = time.monotonic() + DEADLINE
        while True:
            text = self.screen()
            if len(re.findall(pattern, text)) >= count:
                return text
            if time.monotonic() > end:
                raise AssertionError(f"{pattern!r} (x{count}) never showed; the screen:\n{text}")
            time.sleep(0.05)

    def ready(self) -> None:
        """Wait for the prompt: only then is bracketed paste on (a paste before it arrives as typed lines)."""
        self.wait(r"›$")

    def exit_status(self) -> int:
        """cfai's exit status once it has left (128 + N when signal N ended it)."""
        end = time.monotonic() + DEADLINE
        while True:
            written = self.status.read_text().strip() if self.status.exists() else ""
            if written:
                return int(written)
            if time.monotonic() > end:
                raise AssertionError(f"cfai did not leave; the screen:\n{self.screen()}")
            time.sleep(0.05)


@pytest.fixture
def tmux_env(cfai_home: Path) -> Iterator[dict[str, str]]:
    socket = f"cfai-test-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TMUX", "CLOUDFLARE_", "CFAI_"))}
    env.update({"CFAI_HOME": str(cfai_home), "TERM": "xterm-256color", "NO_COLOR": "1", "TMUX_SOCKET": socket})
    yield env
    # Only the private server this test started.
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, env=env, timeout=10)


@pytest.fixture
def socket_emulator() -> Iterator[str]:
    """The emulator served over a real socket, so a stream arrives event by event."""
    server = uvicorn.Server(uvicorn.Config(create_emulator_app(), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + DEADLINE
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "the emulator did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/client/v4"
    server.should_exit = True
    thread.join(10)


CFAI = [sys.executable, "-m", "cfai_cli", "chat"]
ANSWERS = r"· \d+ prompt \+ \d+ completion tokens"  # the dim line under each finished answer


def test_a_person_s_session(tmux_env: dict[str, str], socket_emulator: str, tmp_path: Path) -> None:
    env = {k: tmux_env[k] for k in ("CFAI_HOME", "TERM", "NO_COLOR")}
    (tmp_path / "notes.txt").write_text("the secret word is kumquat\n")
    one = Pane(tmux_env["TMUX_SOCKET"], "one", tmux_env, tmp_path / "one.status")
    one.start([*CFAI, "--offline"], env)
    one.wait(r"Chatting with")
    one.ready()

    # A pasted block of three lines is one message, sent by one Enter.
    one.paste("line one\nline two\nline three")
    one.wait(r"› line one … line two … line three")
    one.keys("Enter")
    screen = one.wait(r"You said: line one line two line three")
    assert len(re.findall(ANSWERS, one.wait(ANSWERS))) == 1

    # A """ block: Enter adds lines until the closing """.
    for line in ('"""', "alpha", "beta", '"""'):
        one.type(line)
    one.wait(r"You said: alpha beta")
    one.wait(ANSWERS, count=2)

    one.type("/model no such model!")
    one.wait(r"The model stays")
    one.type("/model gpt-4o")
    one.wait(r"\(model: gpt-4o → @cf/")
    one.type("/system Answer briefly.")
    one.wait(r"system prompt set")
    one.type(f"/attach {tmp_path / 'notes.txt'}")
    one.wait(r"attached notes\.txt")
    one.type("what is the word?")
    one.wait(r"answering @cf/meta/llama-4-scout.*You said: what is the word\? notes\.txt")
    one.wait(ANSWERS, count=3)

    one.type("/usage")
    screen = one.wait(r"\(3 answers this session\)")
    assert re.search(r"usage: \d+ prompt \+ \d+ completion tokens · [\d.]+ neurons", screen)

    saved = tmp_path / "chat.md"
    one.type(f"/save {saved}")
    one.wait(r"saved 3 exchange")
    markdown = saved.read_text()
    assert "## system\n\nAnswer briefly." in markdown
    assert "## user\n\nline one\nline two\nline three\n" in markdown and "kumquat" in markdown
    assert markdown.count("## assistant") == 3

    one.type("/frobnicate")
    screen = one.wait(r"Commands:")
    assert "unknown command /frobnicate" in screen
    assert len(re.findall(ANSWERS, screen)) == 3  # never sent to the model

    one.ready()  # Ctrl-D at the prompt, as a person presses it (typed during an answer, the tty would eat it)
    one.keys("C-d")
    assert one.exit_status() == 0

    # A second session (a real socket, a real account's settings): the history is there, Ctrl-C cancels.
    two = Pane(tmux_env["TMUX_SOCKET"], "two", tmux_env, tmp_path / "two.status")
    two.start(CFAI, {**env, "CFAI_API_BASE": socket_emulator, "CLOUDFLARE_ACCOUNT_ID": "0123456789abcdef" * 2,
                     "CLOUDFLARE_API_TOKEN": "test-token"})
    two.wait(r"Chatting with")
    two.ready()  # an Up typed before the prompt reads raw keys is echoed as ^[[A over the line (seen on CI)
    two.keys("Up")
    two.wait(r"› /frobnicate")
    two.keys("Up")
    two.wait(r"› /save ")
    two.keys("C-c")  # clears the line
    two.wait(r"/exit or Ctrl-D to leave")

    two.type("[emulator:slow] " + " ".join(f"w{i}" for i in range(40)))
    two.wait(r"emulator answering")  # the answer has started streaming
    two.keys("C-c")
    screen = two.wait(r"\(cancelled\)")
    partial = screen[screen.index("[emulator:slow] w0"):screen.index("(cancelled)")]
    assert partial.count("[offline]") == 1, screen  # the partial answer stays on screen, once
    assert not re.search(ANSWERS, screen)  # the answer did not finish

    two.type("quick")
    screen = two.wait(r"You said: quick")
    two.wait(ANSWERS)
    assert screen.count("(cancelled)") == 1
    two.ready()
    two.keys("C-d")
    assert two.exit_status() == 0
