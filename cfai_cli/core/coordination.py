"""The `[coordination]` setting: where replicas share their rate limits (a Redis URL), and what a request meets
when that store cannot be reached. Pure: stdlib only; the Redis client lives in store.redis_limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cfai_cli.core.store_url import split_service_url

SCHEMES = ("redis", "rediss", "unix")
OnFailure = Literal["closed", "open"]


@dataclass(frozen=True)
class CoordinationConfig:
    """No url: every limit lives in this host's SQLite database (the default, unchanged). With one, rate limits
    and budgets are kept in Redis so every replica enforces one limit and one budget (and the router's rests and the
    response cache are shared there too, always failing open: store.coordination.shared_parts). `on_failure`:
    "closed" refuses requests (503) while Redis is unreachable, "open" admits them on this process's own limiter
    (and ledger) with a warning."""

    url: str | None = None
    on_failure: OnFailure = "closed"


def check_redis_url(value: str) -> str:
    """A redis://, rediss:// or unix:// URL (ValueError naming what is wrong, never echoing a password)."""
    text = value.strip()
    parts = split_service_url(text, SCHEMES, shape="redis://host:port/db",
                              scheme_error=f"must be a URL starting with {', '.join(s + '://' for s in SCHEMES)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("must name a host: redis://host:port/db")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("must name a socket path: unix:///path/to/redis.sock")
    return text


def redis_place(url: str) -> str:
    """Where the URL points, for messages: host:port (or the socket path), never the user or the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"
