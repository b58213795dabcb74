"""Token counts without a tokenizer: a documented estimator, the chat-template overhead, and the wire models
of POST /v1/tokenize.

Pure: the standard library, pydantic, core and errors. The estimator splits text the way the byte-level BPE
pre-tokenizers of Llama 3 and GPT-4o do, then charges each piece by what it is made of; its constants were
fitted against the Llama 3 tokenizer (bench/tokens_calibrate.py). An estimate is labelled as one everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache
from typing import Annotated, Literal, TypedDict

from pydantic import Field

from cfai_cli.core.openai.base import WireModel
from cfai_cli.core.openai.chat import Message
from cfai_cli.errors import InvalidRequest

# The Llama 3 / cl100k pre-tokenizer with the standard library's classes: `[^\W\d_]` is "a letter" (\p{L}),
# `\d` is \p{N}, and "not space, letter or digit" (with `_`, which `\w` counts as a letter) is punctuation.
# BPE never merges across these pieces, so each piece costs at least one token.
# Compiled on first use (`_pattern`): ~15 ms that every `cfai` command importing this module paid at start-up.
_PIECES = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"  # English contractions are tokens of their own
    r"|(?:[^\r\n\w]|_)?[^\W\d_]+"  # a word, with the space (or one punctuation mark) before it
    r"|\d{1,3}"  # numbers go in groups of at most three digits
    r"| ?(?:[^\s\w]|_)+[\r\n]*"  # a run of punctuation, with a space before and newlines after
    r"|\s*[\r\n]+"  # newlines, with the indentation before them
    r"|\s+(?!\S)"  # spaces that do not lead into a word
    r"|\s+"
)

# Scripts whose characters are charged by the character (Han, kana, Hangul and their punctuation).
_CJK = (
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3200-\u9fff\ua960-\ua97f"
    "\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)

@cache
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)


# Constants fitted against the Llama 3 tokenizer (128k vocabulary) on English prose, Markdown, Python, JSON, and
# samples in ten other languages; see bench/tokens_calibrate.py. No one set fits every script: ESTIMATE_NOTE
# states the error to expect.
WORD_CHARS = 7  # an ASCII word this long or shorter is one token (" Workers", "request")
WORD_CHARS_PER_EXTRA = 4  # each further 4 letters of a longer word cost one more token
LETTER_QUARTERS_PER_BYTE = 3  # a non-ASCII letter weighs 3/4 of an ASCII letter per UTF-8 byte (é = 1.5, ж = 1.5)
CJK_FIFTHS_PER_CHAR = 4  # Han, kana and Hangul: 4/5 of a token a character (Llama 3 measures 0.6-0.7)
SYMBOL_BYTES_PER_TOKEN = 3  # other non-ASCII (emoji, dashes, arrows) by their UTF-8 bytes
PUNCT_CHARS_PER_TOKEN = 2  # ")", "**", "):" and '",' are single tokens; longer runs split
SPACES_PER_TOKEN = 16  # a run of spaces or newlines is one token up to about this length

# Chat-template overhead, from the Llama 3 template Workers AI's Llama models use:
#   <|start_header_id|>ROLE<|end_header_id|>\n\n CONTENT <|eot_id|>  -> 5 tokens around each message,
# one more (and the name itself) when a message has a `name`, and once per conversation
# <|begin_of_text|> plus the header that starts the assistant's reply (4) -> 5.
# gpt-oss (harmony: <|start|>ROLE<|message|>...<|end|>) and ChatML models (Qwen, GLM) are within a token or
# two of this per message; a model's own built-in system prompt, if any, is not counted.
TOKENS_PER_MESSAGE = 5
TOKENS_PER_NAME = 1
TOKENS_PER_CONVERSATION = 5

ESTIMATE_NOTE = (
    "Estimated: no tokenizer for this model is available offline, so the text is split the way byte-level BPE "
    "tokenizers split it (words, 1-3 digit numbers, punctuation, spaces) and each piece is charged by its length "
    "and script (CJK characters about 0.8 tokens each). For English prose and code expect it within about 10% "
    "of the model's own count; for other languages it can be off by up to about 40% either way."
)
MESSAGES_NOTE = (
    f" Each message count includes {TOKENS_PER_MESSAGE} tokens of chat template; total_tokens adds "
    f"{TOKENS_PER_CONVERSATION} for the start of the conversation and of the reply."
)


def pieces(text: str) -> list[str]:
    """The pre-tokenizer's pieces of `text`; joined, they give `text` back."""
    return _pattern(_PIECES).findall(text)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _word_cost(quarters: int) -> int:
    """Tokens for a word whose letters weigh `quarters` quarter-letters (integers keep it exact)."""
    if quarters <= 4 * WORD_CHARS:
        return 1
    return 1 + _ceil_div(quarters - 4 * WORD_CHARS, 4 * WORD_CHARS_PER_EXTRA)


def piece_cost(piece: str) -> int:
    """Tokens for one pre-tokenizer piece (at least one)."""
    if piece.isspace():
        return _ceil_div(len(piece), SPACES_PER_TOKEN)
    if piece.isascii():
        body = piece.lstrip(" ")
        if body[:1].isalpha() or body[1:2].isalpha():  # a word, maybe after one space or punctuation mark
            return _word_cost(4 * sum(c.isalpha() for c in body))
        if body.isdigit():
            return 1
        return _ceil_div(len(body.rstrip("\r\n")), PUNCT_CHARS_PER_TOKEN) or 1
    cjk = quarters = symbol_bytes = 0
    cjk_char = _pattern(_CJK).match
    for char in piece.lstrip(" "):
        if char.isascii():
            quarters += 4 if char.isalpha() else 0
        elif cjk_char(char):
            cjk += 1
        elif char.isalpha():
            quarters += LETTER_QUARTERS_PER_BYTE * len(char.encode("utf-8"))
        else:
            symbol_bytes += len(char.encode("utf-8"))
    cost = _ceil_div(cjk * CJK_FIFTHS_PER_CHAR, 5) + _ceil_div(symbol_bytes, SYMBOL_BYTES_PER_TOKEN)
    if quarters:
        cost += _word_cost(quarters)
    return max(cost, 1)


def estimate_tokens(text: str) -> int:
    """Estimated tokens in `text` (0 for ""), deterministic and linear in its length."""
    return sum(piece_cost(piece) for piece in pieces(text))


def message_text(message: Message) -> str:
    """What of a message reaches the model as text: its content's text and any tool calls it made."""
    parts = [message.text()]
    for call in message.tool_calls or ():
        parts.append(call.name())
        parts.append(call.arguments_text())
    return "\n".join(p for p in parts if p)


def message_tokens(message: Message, count: Callable[[str], int]) -> int:
    """Tokens of one chat message, its texts counted by `count` (a tokenizer, or the estimator), plus the
    chat template's tokens around it."""
    cost = TOKENS_PER_MESSAGE + count(message_text(message))
    if message.name:
        cost += TOKENS_PER_NAME + count(message.name)
    return cost


def estimate_message(message: Message) -> int:
    """Estimated tokens of one chat message, template overhead included."""
    return message_tokens(message, estimate_tokens)


# ---- POST /v1/tokenize -------------------------------------------------------------------------------------


class TokenizeRequest(WireModel):
    """`{"model", "input"}` (a text or a list of texts) or `{"model", "messages"}` (a chat), not both."""

    model: str
    input: str | list[str] | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input or [])


def check_tokenize(req: TokenizeRequest) -> None:
    """Exactly one of `input` and `messages`; each failure is a 400 naming the parameter."""
    if req.input is not None and req.messages is not None:
        raise InvalidRequest("Give either 'input' or 'messages', not both.", param="messages",
                             code="invalid_value")
    if req.input is None and req.messages is None:
        raise InvalidRequest("Missing required parameter: 'input' (a text or a list of texts) or 'messages'.",
                             param="input", code="missing_required_parameter")
    if isinstance(req.input, list) and not req.input:
        raise InvalidRequest("'input' must not be an empty list.", param="input", code="invalid_value")


class TokenizeResult(TypedDict):
    object: Literal["tokenize"]
    model: str
    total_tokens: int
    counts: list[int]
    method: Literal["estimate", "exact"]
    tokenizer: str | None
    note: str


def estimate_result(req: TokenizeRequest, model_id: str) -> TokenizeResult:
    """The estimated counts for a checked request."""
    if req.messages is not None:
        counts = [estimate_message(m) for m in req.messages]
        return result(model_id, counts, TOKENS_PER_CONVERSATION, method="estimate", tokenizer=None,
                      note=ESTIMATE_NOTE + MESSAGES_NOTE)
    counts = [estimate_tokens(t) for t in req.texts()]
    return result(model_id, counts, 0, method="estimate", tokenizer=None, note=ESTIMATE_NOTE)


def result(model_id: str, counts: Iterable[int], extra: int, *, method: Literal["estimate", "exact"],
           tokenizer: str | None, note: str) -> TokenizeResult:
    listed = list(counts)
    return {"object": "tokenize", "model": model_id, "total_tokens": sum(listed) + extra, "counts": listed,
            "method": method, "tokenizer": tokenizer, "note": note}


# Families whose tokenizer a package can carry offline (see service.tokens): Llama 3.x and Llama 4.
_LLAMA3 = re.compile(r"^@(?:cf|hf)/meta(?:-llama)?/(?:meta-)?llama-(?:3|guard-3)")
_LLAMA4 = re.compile(r"^@(?:cf|hf)/meta(?:-llama)?/llama-4")


def tokenizer_family(model_id: str) -> Literal["llama3", "llama4"] | None:
    """Which known tokenizer a Workers AI model uses, if it is one we can load offline."""
    if _LLAMA3.match(model_id):
        return "llama3"
    if _LLAMA4.match(model_id):
        return "llama4"
    return None
