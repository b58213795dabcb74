"""Shared helpers for the core tests: fixture loading and reassembly of OpenAI chunk streams."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "workers"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def sse_fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.sse"))


def id_counter(prefix: str = "call_") -> Callable[[], str]:
    """A deterministic stand-in for the random id generator."""
    n = 0

    def make() -> str:
        nonlocal n
        n += 1
        return f"{prefix}{n}"

    return make


def splits(data: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


@dataclass
class Reassembled:
    """What an OpenAI client accumulates from the deltas of one choice."""

    role: str | None = None
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    fragments: list[dict[str, Any]] = field(default_factory=list)  # every tool-call fragment, in order

    def add(self, choice: dict[str, Any]) -> None:
        assert self.finish_reason is None, "a delta arrived after the finish_reason"
        delta = choice["delta"]
        if "role" in delta:
            assert self.role is None, "role sent twice"
            self.role = delta["role"]
        self.content += delta.get("content") or ""
        self.reasoning += delta.get("reasoning_content") or ""
        for piece in delta.get("tool_calls") or []:
            self.fragments.append(piece)
            index = piece["index"]
            while len(self.tool_calls) <= index:
                self.tool_calls.append({"id": None, "type": None, "name": None, "arguments": ""})
            call = self.tool_calls[index]
            if "id" in piece:
                call["id"] = piece["id"]
            if "type" in piece:
                call["type"] = piece["type"]
            fn = piece.get("function") or {}
            if "name" in fn:
                call["name"] = fn["name"]
            call["arguments"] += fn.get("arguments") or ""
        if choice["finish_reason"] is not None:
            self.finish_reason = choice["finish_reason"]

    def summary(self) -> dict[str, Any]:
        return {
            "role": self.role, "content": self.content, "reasoning": self.reasoning,
            "tool_calls": [dict(c) for c in self.tool_calls], "finish_reason": self.finish_reason,
        }


def counting_ids() -> Callable[[str], str]:
    """Deterministic ids for translators that take an id source: msg_1, msg_2, fc_1, ..."""
    counts: dict[str, int] = {}

    def make(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}_{counts[prefix]}"

    return make
