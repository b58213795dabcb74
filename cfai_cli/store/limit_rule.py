"""What a key's sliding windows allow: the decision on more requests, and OpenAI's x-ratelimit-* headers.

Imports stdlib and store.keys. One rule for every `RateLimits`: store.limits' SQLite windows call `decide_counts`
with the numbers they read, store.redis_limits calls `decide` with what its Lua script measured (the script
repeats the admission rule, which must be decided inside Redis to be atomic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from cfai_cli.store.keys import KeyPolicy

MINUTE, DAY = 60.0, 86400.0


@dataclass(slots=True)
class Decision:
    """Admitted or not, how long to wait and why, and the x-ratelimit-* headers as an answer carries them (`raw`:
    names and values as bytes, made so by `decide` for server.auth to append as they are: encoding a dict of them
    per request cost ~11 k instructions, docs/performance.md round 9; `headers` as text, for refusals and tests)."""

    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    raw: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode("latin-1"): value.decode("latin-1") for name, value in self.raw}


class Window(NamedTuple):
    """What one sliding window of a key holds now: its units, and when its oldest entry came (None: empty), as
    `decide` takes them (store.redis_limits; the SQLite admissions give `decide_counts` the numbers themselves)."""

    used: int
    oldest: float | None


UNMEASURED = Window(0, None)  # a window the key's policy does not limit


_LIMIT_REQUESTS, _REMAINING_REQUESTS, _RESET_REQUESTS = (
    b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests")
_LIMIT_TOKENS, _REMAINING_TOKENS, _RESET_TOKENS = (
    b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")


def decide(policy: KeyPolicy, units: int, now: float, minute: Window, day: Window, tokens: Window) -> Decision:
    """The decision on `units` more requests of a key whose windows hold what they do at `now`: which limit
    refuses, how long to wait, and OpenAI's x-ratelimit-* headers. One code for every RateLimits; the admission
    rule is repeated in store.redis_limits' Lua script, which must decide inside Redis to be atomic."""
    return decide_counts(policy, units, now, minute.used, minute.oldest, day.used, day.oldest, tokens.used,
                         tokens.oldest)


def decide_counts(policy: KeyPolicy, units: int, now: float, minute_used: int, minute_oldest: float | None,
                  day_used: int, day_oldest: float | None, tokens_used: int, tokens_oldest: float | None) -> Decision:
    """`decide` on each window's units and oldest entry as they are: store.limits' admissions make no `Window`
    (a named tuple's `__new__` is Python, ~2.8 k instructions each under callgrind: docs/performance.md round 11).
    Written out per window rather than looped over a table, the headers made as bytes at once: it runs on every
    admission of a limited key (~17 k instructions with a dict of text headers, ~28 k with their encoding; round 9)."""
    refusal: Decision | None = None
    rpm, rpd, tpm = policy.rpm, policy.rpd, policy.tpm
    limit: int | None = None
    left = 0
    wait = 0.0
    if rpm is not None:  # the headers describe the per-minute window when there is one
        used = minute_used + units
        wait = MINUTE if minute_oldest is None else minute_oldest + MINUTE - now
        limit, left = rpm, rpm - used
        if used > rpm:
            refusal = Decision(False, max(wait, 0.001), f"this key's limit of {rpm} requests per minute")
    if rpd is not None:
        used = day_used + units
        reset = DAY if day_oldest is None else day_oldest + DAY - now
        if rpm is None:
            limit, left, wait = rpd, rpd - used, reset
        if used > rpd and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {rpd} requests per day")
    # A limit's digits made once (b"%d" ~1 k instructions, the dict's get ~0.4 k), a reset of a minute or less from
    # the table at once (`_reset_raw` inlined): measured under callgrind, docs/performance.md round 11.
    raw = [] if limit is None else [
        (_LIMIT_REQUESTS, _LIMITS.get(limit) or _digits(limit)),
        (_REMAINING_REQUESTS, b"%d" % left if left > 0 and refusal is None else b"0"),
        (_RESET_REQUESTS, _RESETS[total] if 0 <= (total := math.ceil(wait)) <= 60 else _reset_raw(wait))]
    if tpm is not None:
        used = tokens_used
        reset = 0.0 if tokens_oldest is None else tokens_oldest + MINUTE - now
        raw += ((_LIMIT_TOKENS, _LIMITS.get(tpm) or _digits(tpm)),
                (_REMAINING_TOKENS, b"%d" % (tpm - used) if used < tpm else b"0"),
                (_RESET_TOKENS, _RESETS[total] if 0 <= (total := math.ceil(reset)) <= 60 else _reset_raw(reset)))
        if used >= tpm and refusal is None:
            refusal = Decision(False, max(reset, 0.001), f"this key's limit of {tpm} tokens per minute")
    if refusal is not None:
        refusal.raw = raw
        return refusal
    return Decision(True, 0.0, "", raw)


_LIMITS: dict[int, bytes] = {}  # a limit's digits, made once: a key's limits are the same every admission


def _digits(limit: int) -> bytes:
    if len(_LIMITS) >= 4096:  # as many limits as keys, at most: forgotten all at once beyond
        _LIMITS.clear()
    digits = _LIMITS[limit] = b"%d" % limit
    return digits


def _reset_raw(seconds: float) -> bytes:
    """`_reset(seconds)` as bytes: a table to a minute (as a window's reset usually is)."""
    total = math.ceil(seconds)
    return _RESETS[max(total, 0)] if total <= 60 else _reset(seconds).encode("ascii")


def _reset(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: '1s', '6m0s', '1h2m3s'."""
    total = max(0, math.ceil(seconds))
    if total < 60:  # a minute's window: the usual case
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"


# b"0s" ... b"59s", b"1m0s": a window's reset of a minute or less, the usual case. To 60 included: a window whose
# oldest row came under a second ago (a key's first second of its minute) resets in 60 s.
_RESETS = tuple(_reset(n).encode("ascii") for n in range(61))


class RateLimits(Protocol):
    """What the server asks of a rate limiter."""

    async def admit(self, key_id: str, policy: KeyPolicy, *, now: float, units: int = 1) -> Decision:
        """Admit `units` requests now (recording them) or refuse them with how long to wait."""

    async def record_tokens(self, key_id: str, tokens: int, *, now: float) -> None:
        """Count the tokens a request of the key spent, for its tokens-per-minute window."""

    def record_tokens_now(self, key_id: str, tokens: int, *, now: float) -> bool:
        """`record_tokens` without an await if it needs none (True: counted, or in this process's next write
        transaction, which every later admission here joins or follows, at most store.hot's HOLD later), else
        False (then await `record_tokens`)."""
