"""The emulator's prefix cache: `x-session-affinity` made observable offline (reference §2.11).

Imports only the standard library and the emulator's own modules. Workers AI sends requests with the same
`x-session-affinity` to one replica, whose prefix cache serves the prompt's shared beginning; the emulator
remembers, per affinity id, the messages of the last request it saw, and reports as
`usage.prompt_tokens_details.cached_tokens` the tokens of the leading messages the new request shares with it
(whole messages, counted as prompt tokens are). Without the header no request is cached: as on Workers AI, where
a request without it may land on any replica. Bounded: the oldest ids are forgotten first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.content import content_text
from cfai_cli.emulator.wire import count_words

MAX_SESSIONS = 4096

Turn = tuple[str, int]  # (the message as canonical JSON, its prompt tokens)


def _turns(body: Mapping[str, Any]) -> tuple[Turn, ...]:
    """The prompt as a sequence of messages: chat `messages`, a Responses `input`, or a native `prompt`."""
    items = body.get("messages", body.get("input", body.get("prompt")))
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return ()
    return tuple((json.dumps(item, sort_keys=True), count_words(content_text(item.get("content"))[0]))
                 for item in items if isinstance(item, Mapping))


class PrefixCache:
    """What each affinity id's replica last prefilled."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._seen: OrderedDict[str, tuple[Turn, ...]] = OrderedDict()

    def cached_tokens(self, affinity: str | None, body: Mapping[str, Any]) -> int:
        """The prompt tokens of `body` the replica of `affinity` already holds; remembers `body` for the next."""
        if not affinity:
            return 0
        turns = _turns(body)
        before = self._seen.pop(affinity, ())
        self._seen[affinity] = turns
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        cached = 0
        for (now, tokens), (then, _) in zip(turns, before, strict=False):
            if now != then:
                break
            cached += tokens
        return cached
