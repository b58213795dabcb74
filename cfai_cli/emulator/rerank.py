"""Emulated Workers AI reranker (reference §4): `{query, contexts: [{text}], top_k?}` -> `{response: [{id, score}]}`.

Imports only the standard library and the emulator's own modules. The score is word overlap: the share of
the query's distinct words (lowercased, `\\w+`) that the context contains, in [0, 1]. Deterministic, and a
document about the query really does rank first, so offline rerank results make sense.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.wire import bad_input, envelope, json_response

MODELS = frozenset({"@cf/baai/bge-reranker-base"})
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def overlap(query: str, text: str) -> float:
    wanted = words(query)
    return round(len(wanted & words(text)) / len(wanted), 6) if wanted else 0.0


def _check(body: Mapping[str, Any]) -> tuple[str, list[str], int | None]:
    """The real schema's checks, worded like its 5006 errors: query and contexts required, texts min 1."""
    query, contexts, top_k = body.get("query"), body.get("contexts"), body.get("top_k")
    if query is None or contexts is None:
        raise bad_input("required properties at '/' are 'query,contexts'")
    if not isinstance(query, str) or not query:
        raise bad_input("'/query' must NOT have fewer than 1 characters")
    if not isinstance(contexts, list):
        raise bad_input("'/contexts' must be array")
    texts: list[str] = []
    for i, context in enumerate(contexts):
        text = context.get("text") if isinstance(context, dict) else None
        if not isinstance(text, str) or not text:
            raise bad_input(f"'/contexts/{i}/text' must NOT have fewer than 1 characters")
        texts.append(text)
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise bad_input("'/top_k' must be >= 1")
    return query, texts, top_k


def run(model: str, body: Mapping[str, Any]) -> Response:
    query, texts, top_k = _check(body)
    scored = sorted(((i, overlap(query, t)) for i, t in enumerate(texts)), key=lambda pair: (-pair[1], pair[0]))
    if top_k is not None:
        scored = scored[:top_k]
    return json_response(envelope({"response": [{"id": i, "score": s} for i, s in scored]}))
