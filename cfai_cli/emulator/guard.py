"""Emulated Llama Guard 3 (`@cf/meta/llama-guard-3-8b`): a verdict from trigger phrases, never from a model.

Imports only the standard library and the emulator's own modules. A conversation is unsafe when its
text contains one of TRIGGERS' phrases (case-insensitive), with that phrase's hazard code; the table is
documented in docs/moderations.md. With `response_format: {type: json_object}` the answer's `response` is the
object `{safe, categories}`, otherwise the model's own text ("safe" / "unsafe\\nS1,S9"): the two shapes of
Cloudflare's output schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.wire import bad_input, count_words, envelope, json_response

MODELS = frozenset({"@cf/meta/llama-guard-3-8b"})

# (phrase, hazard code): one or more phrases per Llama Guard 3 category, S1..S14.
TRIGGERS: tuple[tuple[str, str], ...] = (
    ("kill them", "S1"), ("murder", "S1"),
    ("shoplift", "S2"), ("launder money", "S2"),
    ("traffic people for sex", "S3"),
    ("sexualize a child", "S4"),
    ("spread lies about my neighbour", "S5"),
    ("stop taking my prescribed medication", "S6"),
    ("home address of", "S7"),
    ("pirated copy", "S8"),
    ("build a bomb", "S9"), ("nerve agent", "S9"),
    ("inferior race", "S10"),
    ("kill myself", "S11"), ("hurt myself", "S11"),
    ("explicit sex scene", "S12"),
    ("vote twice", "S13"),
    ("escape the sandbox", "S14"),
)
_TEMPLATE_TOKENS = 180  # what Llama Guard's prompt template adds around the conversation (a round figure)
_ROLES = ("user", "assistant")
_KEYS = {"messages", "max_tokens", "temperature", "response_format", "stream"}


def verdict(text: str) -> list[str]:
    """The hazard codes `text` triggers, in S-number order (empty: safe)."""
    lowered = text.lower()
    codes = {code for phrase, code in TRIGGERS if phrase in lowered}
    return sorted(codes, key=lambda code: int(code[1:]))


def _messages(body: Mapping[str, Any]) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_input("required properties at '/' are 'messages'")
    texts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise bad_input(f"'/messages/{i}/role' must be equal to one of the allowed values")
        if not isinstance(message.get("content"), str):
            raise bad_input(f"'/messages/{i}/content' must be string")
        texts.append(message["content"])
    return texts


def run(model: str, body: Mapping[str, Any]) -> Response:
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise bad_input(f"must NOT have additional properties at '/' ({unknown[0]})")
    if body.get("stream"):
        raise bad_input("cfai's offline emulator does not stream guard models")
    texts = _messages(body)
    codes = verdict("\n".join(texts))
    fmt = body.get("response_format")
    as_object = isinstance(fmt, dict) and fmt.get("type") == "json_object"
    response: Any = ({"safe": not codes, "categories": codes} if as_object
                     else ("unsafe\n" + ",".join(codes) if codes else "safe"))
    completion = 1 + (1 + len(codes) if codes else 0)
    prompt = _TEMPLATE_TOKENS + sum(count_words(t) for t in texts)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return json_response(envelope({"response": response, "usage": usage}))
