"""The SQLite rate limiter: sliding windows, which limit refuses, how long to wait, the OpenAI-style headers."""

from __future__ import annotations

from pathlib import Path

from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limits import RateLimiter, _reset


def test_requests_per_minute_slide(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path / "cfai.db")
    policy = KeyPolicy(rpm=3)
    assert [limiter.admit("k", policy, now=t).allowed for t in (0.0, 10.0, 20.0, 30.0)] == [True, True, True, False]
    refused = limiter.admit("k", policy, now=30.0)
    assert refused.retry_after == 30.0 and "3 requests per minute" in refused.reason
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert limiter.admit("k", policy, now=60.5).allowed  # the first request left the window
    assert limiter.admit("other", policy, now=30.0).allowed  # limits are per key


def test_requests_per_day_and_headers(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path / "cfai.db")
    policy = KeyPolicy(rpm=10, rpd=2)
    first = limiter.admit("k", policy, now=0.0)
    assert first.headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                             "x-ratelimit-reset-requests": "1m0s"}
    assert limiter.admit("k", policy, now=100.0).allowed
    refused = limiter.admit("k", policy, now=200.0)
    assert not refused.allowed and "per day" in refused.reason and refused.retry_after == 86400.0 - 200.0


def test_tokens_per_minute(tmp_path: Path) -> None:
    limiter = RateLimiter(tmp_path / "cfai.db")
    policy = KeyPolicy(tpm=100)
    assert limiter.admit("k", policy, now=0.0).allowed
    limiter.record_tokens("k", 60, now=1.0)
    assert limiter.admit("k", policy, now=2.0).headers["x-ratelimit-remaining-tokens"] == "40"
    limiter.record_tokens("k", 50, now=3.0)
    refused = limiter.admit("k", policy, now=4.0)
    assert not refused.allowed and refused.retry_after == 57.0
    assert limiter.admit("k", policy, now=63.5).allowed


def test_reset_format() -> None:
    assert [_reset(s) for s in (0, 0.2, 59, 60, 61, 3725)] == ["0s", "1s", "59s", "1m0s", "1m1s", "1h2m5s"]
