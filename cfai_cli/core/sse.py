"""Server-sent events: an incremental decoder safe against any byte split, and the encoder.

Pure: standard library only. Follows the WHATWG event-stream parsing rules (CRLF/CR/LF line ends,
multi-line `data:`, comments, a leading BOM) so upstream bytes can arrive in chunks of any size.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.errors import UpstreamAnswerTooLarge

_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")

# An event not yet ended (its data lines and an unfinished line) beyond this many characters stops the stream:
# a stream is read piece by piece, and without it an upstream that never ends a line or an event would make the
# decoder hold all of it (upstream.whole caps the answers read whole). Workers AI's events are under 1 KB, the
# largest events other providers stream (a partial image's base64) a few MB.
MAX_EVENT_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its data, and its event name and id when it had them."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed raw bytes with `decode()`; call `flush()` once at end of input."""

    def __init__(self) -> None:
        # An incremental UTF-8 decoder keeps a multi-byte character split across chunks intact (its class looked up
        # once: `codecs.getincrementaldecoder` is a registry lookup through Python code, every stream).
        self._utf8 = _UTF8_DECODER(errors="replace")
        self._buffer = ""
        self._scanned = 0  # how much of `_buffer` is known to hold no line end
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._started = False
        self._pending_cr = False
        self._held: list[str] | None = None  # the data list `_held_chars` counts (a new list: a new event)
        self._held_chars = 0

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        text = self._utf8.decode(chunk)
        found = self._data_events(text)
        if found is None:
            events = self._feed(text)
        else:
            events = [SSEEvent(data, None, self._id) for data in found[0]]
            self._feed_rest(text, found[1])
        self._bound(len(text))
        return events

    def decode_data(self, chunk: bytes) -> list[str]:
        """The `data` of each event `decode` would return: for a reader that has no use for event names or ids
        (Workers AI's streams), without an SSEEvent per event."""
        text = self._utf8.decode(chunk)
        found = self._data_events(text)
        if found is None:
            datas = [event.data for event in self._feed(text)]
        else:
            datas = found[0]
            self._feed_rest(text, found[1])
        self._bound(len(text))
        return datas

    def _bound(self, fed: int) -> None:
        """Stop at an event held beyond MAX_EVENT_CHARS. What is held is the unfinished line and the pending
        event's data lines; the data is summed once when its event starts, then grows by at most what each
        chunk brought (an over-count of at most one unfinished line), so the check stays O(1) a chunk."""
        data = self._data
        if not data:
            self._held, self._held_chars = None, 0
        elif data is self._held:
            self._held_chars += fed
        else:
            self._held, self._held_chars = data, sum(map(len, data))
        if self._held_chars + len(self._buffer) > MAX_EVENT_CHARS:
            raise UpstreamAnswerTooLarge(
                f"The upstream sent an event of more than {MAX_EVENT_CHARS:,} characters without ending it; the "
                "stream was stopped.")

    def _data_events(self, text: str) -> tuple[list[str], int] | None:
        """The events' data, and where they end, when `text` is whole `data: …` events and nothing else up to
        its last blank line and the decoder holds nothing from an earlier chunk (every event of a Workers AI
        stream, in one read or several); None when the line-by-line parse is needed. One split finds them
        instead of a Python loop over the lines and an SSEEvent per event: the text up to its last blank line,
        less its first `data: ` and that blank line, split at each `\n\ndata: `. They are exactly the events the
        lines give when no piece holds a line end, that is when the text up to there has two line ends an event
        and no more: each event is then `data: ` + one line + a blank line, so each dispatches its one data line,
        with no event name (none is pending). Call `_feed_rest` after taking the events (an `id:` line in the
        rest is for later ones). A 22-event read: ~195k instructions line by line, ~47k with the regular
        expression `data: ([^\n]*)\n\n` (round 5), ~23k split (callgrind; docs/performance.md, "First event
        round 9")."""
        if self._buffer or self._data or self._event is not None or self._pending_cr or "\r" in text:
            return None
        end = text.rfind("\n\n") + 2
        if end < 2 or not text.startswith("data: "):  # a BOM first, or any other line, goes line by line
            return None
        found = text[6:end - 2].split("\n\ndata: ")
        if text.count("\n", 0, end) != 2 * len(found):
            return None
        return found, end

    def _feed_rest(self, text: str, end: int) -> None:
        """What follows the events `_data_events` found holds no blank line (theirs was the last): it waits."""
        self._started = True
        if end < len(text):
            self._feed_lf(text[end:])

    def flush(self) -> list[SSEEvent]:
        events = self._feed(self._utf8.decode(b"", final=True))
        if self._buffer:
            # A last line without its line end still counts (lenient in).
            line, self._buffer = self._buffer, ""
            events.extend(self._line(line))
        events.extend(self._dispatch())
        return events

    def _feed(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._pending_cr:
            # The previous chunk ended in CR; a LF right here belongs to the same line end.
            self._pending_cr = False
            text = text.removeprefix("\n")
        if "\r" not in text:
            return self._feed_lf(text)
        # One pass with a moving position: re-slicing the buffer or searching it from the start for each
        # line would make one large chunk (a whole buffered answer) quadratic in its size.
        buffer = self._buffer + text
        size = len(buffer)
        events: list[SSEEvent] = []
        pos = 0
        lf = -2  # -2: not searched yet; -1: no LF after `pos`
        while pos < size:
            if lf == -2 or (lf != -1 and lf < pos):
                lf = buffer.find("\n", max(pos, self._scanned))
            cr = buffer.find("\r", max(pos, self._scanned), lf if lf >= 0 else size)
            idx = cr if cr >= 0 else lf
            if idx < 0:
                break
            sep = 1
            if buffer[idx] == "\r":
                if idx + 1 < size:
                    if buffer[idx + 1] == "\n":
                        sep = 2
                else:
                    self._pending_cr = True
            line = buffer[pos:idx]
            pos = idx + sep
            self._scanned = 0
            events.extend(self._line(line))
        self._buffer = buffer[pos:]
        self._scanned = len(self._buffer)  # the rest holds no line end: the next chunk's search starts after it
        return events

    def _feed_lf(self, text: str) -> list[SSEEvent]:
        """`_feed` for text without a CR (what every known upstream sends): one split into lines, and the
        common lines (`data:` and the blank line that ends an event) handled inline. The general loop
        above cost ~3 µs a line, 40% of what a 20-event stream's translation costs in all (bench/streams.py)."""
        end = text.rfind("\n")
        if end < 0:
            self._buffer += text
            self._scanned = len(self._buffer)
            return []
        # The held-back buffer holds no line end (and no CR: a CR would have ended a line), so the lines
        # of buffer + text are its lines; what follows the last LF waits for the next chunk.
        complete, self._buffer = self._buffer + text[:end], text[end + 1:]
        self._scanned = len(self._buffer)
        events: list[SSEEvent] = []
        data = self._data
        for line in complete.split("\n"):
            if not line:
                if data:
                    events.append(SSEEvent("\n".join(data), self._event, self._id))
                    data = self._data = []
                self._event = None
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            else:
                events.extend(self._line(line))
                data = self._data  # `_line` never dispatches a non-empty line, but stay in step with it
        return events

    def _line(self, line: str) -> list[SSEEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return []
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return []

    def _dispatch(self) -> list[SSEEvent]:
        if not self._data:
            self._event = None
            return []
        event = SSEEvent(data="\n".join(self._data), event=self._event, id=self._id)
        self._data = []
        self._event = None
        return [event]


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_sse(data: str | Mapping[str, Any], *, event: str | None = None) -> bytes:
    """One SSE event. Mappings become compact JSON; JSON never contains a raw newline.

    Every CR, LF or CRLF in `data` ends a line on the wire, so each one becomes its own `data:` line
    (a reader sees a LF there); splitting on LF alone would let the text after a lone CR become a
    stray field line that readers drop.
    """
    if not isinstance(data, str):
        # JSON escapes every CR and LF, so it is always one line (the per-chunk hot path of every stream).
        line = b"data: " + jsonfast.dumps(data) + b"\n\n"
        return f"event: {event}\n".encode() + line if event else line
    text = data
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text))
    return (head + body + "\n").encode("utf-8")


def encode_sse_all(events: Sequence[Mapping[str, Any]]) -> bytes:
    """`encode_sse` of each event (JSON, no event names), concatenated: a stream's batch in one call, its JSON
    written by one `jsonfast.dumps_all` and framed by one join (22 chunks: ~190k -> ~100k instructions)."""
    if not events:
        return b""
    return b"data: " + b"\n\ndata: ".join(jsonfast.dumps_all(events)) + b"\n\n"


DONE = b"data: [DONE]\n\n"
