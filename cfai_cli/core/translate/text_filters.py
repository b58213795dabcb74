"""The two text filters a streamed answer passes through: stop sequences cut (for models without `stop`) and
inline `<think>` blocks split out as reasoning, each holding back only what could still be the start of one.

Pure: standard library and cfai_cli.core. Used by core.translate.chat_stream's ChoiceStream.
"""

from __future__ import annotations

from collections.abc import Sequence

from cfai_cli.core.translate.chat_answer import first_stop


class StopFilter:
    """Cuts text at the first stop sequence, holding back only what could still start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buf = self._held + text
        cut = first_stop(buf, self._stops)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        keep = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buf)), 0, -1):
                if buf.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @property
    def passes_all(self) -> bool:
        """No stop sequence to look for: `feed` gives back what it is given."""
        return not self._stops


class ThinkFilter:
    """Splits a leading `<think>…</think>` block out of streamed native text (reference §2.8)."""

    _OPEN, _CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> gap (whitespace after the close tag) -> answer
        self._buf = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Pieces as ("reasoning" | "content", text)."""
        self._buf += text
        out: list[tuple[str, str]] = []
        if self._state == "start":
            stripped = self._buf.lstrip()
            if not stripped:
                return out
            if stripped.startswith(self._OPEN):
                self._state, self._buf = "thinking", stripped[len(self._OPEN) :]
            elif self._OPEN.startswith(stripped):
                return out  # could still become "<think>"
            else:
                self._state = "answer"
        if self._state == "thinking":
            idx = self._buf.find(self._CLOSE)
            if idx >= 0:
                if idx:
                    out.append(("reasoning", self._buf[:idx]))
                self._state, self._buf = "gap", self._buf[idx + len(self._CLOSE) :]
            else:
                keep = next((n for n in range(len(self._CLOSE) - 1, 0, -1)
                             if self._buf.endswith(self._CLOSE[:n])), 0)
                emit = self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                if emit:
                    out.append(("reasoning", emit))
                return out
        if self._state == "gap":
            # Like split_think: the answer starts at its first non-space, however the events were cut.
            self._buf = self._buf.lstrip()
            if not self._buf:
                return out
            self._state = "answer"
        if self._state == "answer" and self._buf:
            out.append(("content", self._buf))
            self._buf = ""
        return out

    @property
    def answering(self) -> bool:
        """Past the think block (or there was none): `feed` gives its text back as one content piece."""
        return self._state == "answer"

    def flush(self) -> list[tuple[str, str]]:
        buf, self._buf = self._buf, ""
        if not buf:
            return []
        return [("reasoning" if self._state == "thinking" else "content", buf)]
