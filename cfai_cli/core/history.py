"""A logged conversation as the next request's history, and a turn's messages as the log keeps them.

Pure: stdlib only. The exchange log (store.exchanges) keeps what each turn added in chat-completions form,
whatever API carried it. `storable` bounds a message before it is kept (an inline image over MAX_INLINE
characters becomes a short text placeholder: the log is not an image store, and a later turn cannot resend
it). `history` lays a conversation's turns out in order (user messages, then the answer as the assistant's),
dropping the oldest turns past a token budget; `responses_items` gives the same turns as Responses input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
MAX_INLINE = 4096  # characters of a data: URI kept as is; longer images become placeholders
PER_MESSAGE = 4  # template tokens around each message (core.tokens.TOKENS_PER_MESSAGE's order of magnitude)


def _placeholder(url: str) -> str:
    mime = url[5:].partition(";")[0] or "image"
    kb = (len(url.partition(",")[2]) * 3 // 4 + 1023) // 1024
    return f"[{mime} image of {kb} KB sent here; the log keeps no copy]"


def storable(message: Mapping[str, Any]) -> Json:
    """`message` as the log keeps it: images given inline and larger than MAX_INLINE as text placeholders."""
    content = message.get("content")
    if not isinstance(content, list):
        return dict(message)
    parts: list[Any] = []
    for part in content:
        url = None
        if isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
            given = part.get("image_url")
            url = given.get("url") if isinstance(given, Mapping) else given
        if isinstance(url, str) and url.startswith("data:") and len(url) > MAX_INLINE:
            parts.append({"type": "text", "text": _placeholder(url)})
        else:
            parts.append(part)
    return {**message, "content": parts}


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined (images left out)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, Mapping) and p.get("type") in ("text", "input_text", "output_text")
                         and isinstance(p.get("text"), str))
    return ""


def said(messages: Iterable[Mapping[str, Any]], role: str = "user") -> str:
    """What `role` said in `messages`, joined by blank lines (the log's prompt and search text)."""
    return "\n\n".join(t for m in messages if m.get("role") == role and (t := text_of(m.get("content"))))


def system_of(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The system (or developer) prompt the messages set, if any (the last one given)."""
    found = [text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class Turn:
    """One logged exchange: the messages it added (chat form) and the answer it got."""

    messages: list[Json]
    answer: str
    tool_calls: list[Json]


def assistant_message(answer: str, tool_calls: Sequence[Mapping[str, Any]]) -> Json:
    """The answer as the assistant's turn. Tool calls become a line of text: their results never came back
    (cfai chat runs no tools), and a call without its result is refused by chat templates."""
    calls = [f"(called {c.get('name')}({c.get('arguments')}))" for c in tool_calls]
    return {"role": "assistant", "content": "\n".join([answer, *calls] if answer else calls)}


def history(turns: Sequence[Turn], *, budget: int, count: Callable[[str], int]) -> tuple[list[Json], int]:
    """The turns' messages in order (system prompts left out: the caller puts the conversation's one first)
    and the number of oldest turns dropped to keep the estimated tokens (`count`) within `budget`.
    The newest turn is always kept."""
    laid: list[list[Json]] = []
    for turn in turns:
        said_here = [m for m in turn.messages if m.get("role") not in ("system", "developer")]
        laid.append([*said_here, assistant_message(turn.answer, turn.tool_calls)])
    sizes = [sum(PER_MESSAGE + count(text_of(m.get("content"))) for m in messages) for messages in laid]
    dropped, total = 0, sum(sizes)
    while total > budget and dropped < len(laid) - 1:
        total -= sizes[dropped]
        dropped += 1
    return [m for messages in laid[dropped:] for m in messages], dropped


def responses_items(messages: Sequence[Mapping[str, Any]]) -> list[Json]:
    """Chat messages as Responses input items (easy input messages; the Responses translator takes chat
    content parts as they are)."""
    items: list[Json] = []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "assistant":
            items.append({"role": "assistant", "content": text_of(content)})
        else:
            items.append({"role": message.get("role"), "content": content if content is not None else ""})
    return items
