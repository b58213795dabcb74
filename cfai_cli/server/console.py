"""`cfai serve`'s compact console log: one line per request on a terminal, written off the event loop.

Imports the standard library and core only. The proxy (server.observe) hands over each finished request's
fields, after its answer has been sent, as a tuple: appending it to a bounded queue is all the request pays.
A daemon thread takes them every 50 ms (one write per batch, no wake-up per request), formats them and writes
them to stdout, so a slow or stopped terminal (a paused tmux pane, Ctrl-S) only ever blocks that thread; when
the queue is full, lines are dropped and counted, and the count is printed when the terminal catches up.
Everything client-chosen (path, model, key name) is made printable (no escape sequences) and has cfai keys
and the configured secrets masked before it is shortened (so no secret is cut in two and half shown): the line
shows a key by its name, never its id or secret. cli.serve turns it on only when stdout is a terminal.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections import deque
from typing import NamedTuple

from cfai_cli.core.printable import printable
from cfai_cli.core.redact import Scrubber

CAPACITY = 2048  # lines waiting for the terminal before new ones are dropped
INTERVAL = 0.05  # seconds between batches: quicker than a person reads, rare enough to cost nothing idle
_KEY = re.compile(r"sk-proj-[A-Za-z0-9_\-]+")  # a cfai key pasted into a path or model name
_COLOURS = {2: "32", 3: "36", 4: "33", 5: "31"}  # status class -> ANSI colour: green, cyan, yellow, red


class Entry(NamedTuple):
    ts: float
    method: str
    path: str
    status: int
    seconds: float
    model: str | None
    key: str | None  # the key's name
    prompt_tokens: int
    completion_tokens: int
    neurons: float | None
    estimated: bool


def _safe(text: str, scrubber: Scrubber | None, limit: int = 120) -> str:
    text = printable(text, len(text))
    if "sk-proj-" in text:
        text = _KEY.sub("sk-proj-…", text)
    if scrubber:
        text = scrubber.text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@functools.lru_cache(maxsize=4)
def _clock(second: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(second))


def format_line(entry: Entry, *, colour: bool = False, scrubber: Scrubber | None = None) -> str:
    """'14:02:07 POST /v1/chat/completions 200 412 ms @cf/meta/llama-3.1-8b-instruct-fast key=ci 12+30 tok
    ~0.61 neurons' (`~`: estimated); a part the request did not have is left out."""
    status = str(entry.status)
    if colour:
        status = f"\x1b[{_COLOURS.get(entry.status // 100, '0')}m{status}\x1b[0m"
    parts = [_clock(int(entry.ts)), entry.method, _safe(entry.path, scrubber),
             status, f"{entry.seconds * 1000:.0f} ms"]
    if entry.model:
        parts.append(_safe(entry.model, scrubber))
    if entry.key is not None:
        parts.append("key=" + _safe(entry.key, scrubber, 40))
    if entry.prompt_tokens or entry.completion_tokens:
        parts.append(f"{entry.prompt_tokens}+{entry.completion_tokens} tok")
    if entry.neurons is not None:
        parts.append(f"{'~' if entry.estimated else ''}{entry.neurons:.4g} neurons")
    return " ".join(parts)


class ConsoleLog:
    """A bounded queue of entries and the thread that writes them to file descriptor `fd`."""

    def __init__(self, fd: int = 1, *, colour: bool = False, scrubber: Scrubber | None = None,
                 capacity: int = CAPACITY, interval: float = INTERVAL) -> None:
        self.fd = fd
        self.colour = colour
        self.scrubber = scrubber
        self.capacity = capacity
        self.interval = interval
        self.dropped = 0  # lines dropped so far because the terminal did not keep up
        self._reported = 0
        self._entries: deque[Entry] = deque()
        self._stop = threading.Event()
        self._broken = False
        self._thread: threading.Thread | None = None

    def add(self, entry: Entry) -> None:
        """On the event loop: never waits (deque appends are atomic; the thread takes from the other end)."""
        if len(self._entries) >= self.capacity:
            self.dropped += 1
        else:
            self._entries.append(entry)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cfai-console", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Write what is queued, waiting at most `timeout` seconds for a terminal that does not take it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not self._broken:
            self._drain()
        if not self._broken:
            self._drain()

    def _drain(self) -> None:
        lines: list[str] = []
        while self._entries and not self._broken:
            lines.append(format_line(self._entries.popleft(), colour=self.colour, scrubber=self.scrubber))
            if len(lines) >= 256:
                self._write(lines)
                lines = []
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        dropped = self.dropped
        if dropped > self._reported:
            lines.append(f"({dropped - self._reported} request lines dropped: the terminal was too slow)")
            self._reported = dropped
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:  # the terminal went away (closed pane, EPIPE): the proxy goes on without its log
            self._broken = True
