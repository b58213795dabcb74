"""The rate limiters, SQLite's and Redis's (a real server, tests/infra): sliding windows, which limit refuses, how
long to wait, the OpenAI-style headers; exact with windows of thousands of requests and with several processes'
connections admitting at once. Every behaviour test runs against both implementations."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cfai_cli.store import limit_rule
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limit_rule import DAY, MINUTE, UNMEASURED, RateLimits, Window, _reset, decide
from cfai_cli.store.limits import TRIM_EVERY, RateLimiter, prune
from cfai_cli.store.redis_limits import RedisRateLimits, connect

pytestmark = pytest.mark.anyio
Make = Callable[[], RateLimits]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _maker(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    """Limiters over one shared store: a SQLite file, or one Redis with a prefix of this test's own."""
    if request.param == "sqlite":
        return lambda: RateLimiter(tmp_path / "cfai.db")
    url = request.getfixturevalue("redis_server").url
    prefix = f"test:{uuid.uuid4().hex}:"
    return lambda: RedisRateLimits(connect(url), prefix)


async def close(limiter: RateLimits) -> None:
    if isinstance(limiter, RedisRateLimits):
        await limiter.close()
    elif isinstance(limiter, RateLimiter):
        limiter.hot.close()


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    return _maker(request, tmp_path)


@pytest.fixture
async def limiter(make: Make) -> AsyncIterator[RateLimits]:
    one = make()
    yield one
    await close(one)


async def test_requests_per_minute_slide(limiter: RateLimits) -> None:
    policy = KeyPolicy(rpm=3)
    assert [(await limiter.admit("k", policy, now=t)).allowed for t in (0.0, 10.0, 20.0, 30.0)] == [
        True, True, True, False]
    refused = await limiter.admit("k", policy, now=30.0)
    assert refused.retry_after == 30.0 and "3 requests per minute" in refused.reason
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await limiter.admit("k", policy, now=60.5)).allowed  # the first request left the window
    assert (await limiter.admit("other", policy, now=30.0)).allowed  # limits are per key


async def test_requests_per_day_and_headers(limiter: RateLimits) -> None:
    policy = KeyPolicy(rpm=10, rpd=2)
    first = await limiter.admit("k", policy, now=0.0)
    assert first.headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                             "x-ratelimit-reset-requests": "1m0s"}
    assert (await limiter.admit("k", policy, now=100.0)).allowed
    refused = await limiter.admit("k", policy, now=200.0)
    assert not refused.allowed and "per day" in refused.reason and refused.retry_after == 86400.0 - 200.0


async def test_tokens_per_minute(limiter: RateLimits) -> None:
    policy = KeyPolicy(tpm=100)
    assert (await limiter.admit("k", policy, now=0.0)).allowed
    await limiter.record_tokens("k", 60, now=1.0)
    assert (await limiter.admit("k", policy, now=2.0)).headers["x-ratelimit-remaining-tokens"] == "40"
    await limiter.record_tokens("k", 50, now=3.0)
    refused = await limiter.admit("k", policy, now=4.0)
    assert not refused.allowed and refused.retry_after == 57.0
    assert (await limiter.admit("k", policy, now=63.5)).allowed


async def test_a_busy_minute_is_counted_exactly(limiter: RateLimits) -> None:
    """3,000 requests in a minute, fan-out units among them: the window's sum slides request by request."""
    policy = KeyPolicy(rpm=3000)
    admitted = [await limiter.admit("k", policy, now=i * 0.01, units=1 + (i % 3 == 0)) for i in range(2250)]
    assert all(d.allowed for d in admitted)  # 1,500 requests of 1 unit and 750 of 2: 3,000 units in 22.5 s
    assert (await limiter.admit("k", policy, now=30.0)).retry_after == 30.0
    # At 60.0 the first request (2 units, at 0.0) has left the window; at 60.005 nothing more has.
    after = await limiter.admit("k", policy, now=60.0, units=2)
    assert after.allowed and after.headers["x-ratelimit-remaining-requests"] == "0"
    assert not (await limiter.admit("k", policy, now=60.005)).allowed


async def test_old_rows_are_trimmed(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db)
    for i in range(2250):
        await limiter.admit("k", KeyPolicy(rpm=3000), now=i * 0.01)
    # Trimmed as it goes: the rows of the first minute went, the window's are all there.
    other = RateLimiter(db)  # its count of admissions starts again: it trims on its TRIM_EVERY-th
    for i in range(TRIM_EVERY):
        await other.admit("other", KeyPolicy(rpm=10**6), now=200.0 + i)
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT COUNT(*), MIN(ts) FROM rate_log WHERE key_id = 'other'").fetchone()
    assert kept == (TRIM_EVERY - 4, 204.0)  # nothing older than a minute before the last admission (at 263)
    assert prune(db, now=300.0 + 86400.0) == 2250 + 60


async def test_a_ticks_admissions_of_one_key_decide_as_the_same_admissions_one_by_one(tmp_path: Path) -> None:
    """SQLite: admissions made at once (one piece of the tick's commit, the key's windows read once) decide exactly
    as the same admissions made one after another, in order: the windows' oldest rows leaving inside a group (a
    minute's, a day's), a group longer than a minute, a clock moving back, fan-out units, tokens between groups, trims
    inside groups. (Redis's admissions made at once reach it in no set order.)"""
    rng = random.Random(25)
    policy = KeyPolicy(rpm=6, rpd=30, tpm=40)
    together, alone = RateLimiter(tmp_path / "cfai.db"), RateLimiter(tmp_path / "cfai.db")

    async def both(times: list[float]) -> list[tuple[str, str]]:
        """The admissions at `times` at once (behind another key's, which runs alone: they are one group) and one
        by one: the same decisions; their remaining requests and tokens."""
        got = await asyncio.gather(together.admit("another", policy, now=times[0]),
                                    *(together.admit("at once", policy, now=now) for now in times))
        want = [await alone.admit("one by one", policy, now=now) for now in times]
        assert got[1:] == want
        return [(d.headers["x-ratelimit-remaining-requests"], d.headers["x-ratelimit-remaining-tokens"])
                for d in want]

    assert await both([0.0]) == [("5", "40")]
    # the clock moved back inside a group: the row at 0.0 left the window of the first, not of the second
    assert await both([60.5, 59.5]) == [("5", "40"), ("3", "40")]
    # a group longer than a minute after an idle one: its own first row leaves the window of its last
    assert await both([200.0, 230.0, 261.0]) == [("5", "40"), ("4", "40"), ("4", "40")]
    # the tokens' oldest row leaves the window inside a group
    for limiter, key in ((together, "at once"), (alone, "one by one")):
        await limiter.record_tokens(key, 30, now=300.0)
    assert await both([350.0, 361.0]) == [("5", "10"), ("4", "40")]
    # a day's limit alone, its window empty: the group's own rows are all it holds
    daily = KeyPolicy(rpd=3)
    got = await asyncio.gather(together.admit("another", daily, now=0.0),
                               *(together.admit("daily at once", daily, now=now) for now in (0.0, 1.0, 2.0, 3.0)))
    assert [d.headers["x-ratelimit-remaining-requests"] for d in got[1:]] == ["2", "1", "0", "0"]
    assert [d.allowed for d in got[1:]] == [True, True, True, False]
    t, admitted, refused = 0.0, 0, set()
    for group in range(60):
        if group == 30:
            t = DAY - 30  # the first rows (at 0.0, 60.5, ...) leave the day's window during the next groups
        elif group % 4 == 0:
            t += 70.0  # nothing in the minute's window: the group's own rows are all it holds
        times = []
        for _ in range(rng.randint(2, 9)):
            t += rng.choice((0.0, 0.0, 0.5, 3.0, 9.0, 40.0, -0.25, -6.0))
            times.append((t, rng.choice((1, 1, 1, 2))))
        got = await asyncio.gather(*(together.admit("at once", policy, now=now, units=units) for now, units in times))
        want = [await alone.admit("one by one", policy, now=now, units=units) for now, units in times]
        assert got == want, (group, times)
        admitted += sum(decision.allowed for decision in got)
        refused |= {decision.reason.split(" of ")[1] for decision in got if not decision.allowed}
        tokens = rng.choice((0, 10, 30, 45))
        if tokens:
            for limiter, key in ((together, "at once"), (alone, "one by one")):
                await limiter.record_tokens(key, tokens, now=t)
    assert admitted >= 40 and refused == {"6 requests per minute", "30 requests per day", "40 tokens per minute"}
    await close(together)
    await close(alone)


def _admit_from_worker(make: Make, policy: KeyPolicy, count: int, start: threading.Barrier,
                       results: list[bool]) -> None:
    """A worker process's share: its own limiter and connections, its requests all at once on its own loop."""

    async def burst() -> list[bool]:
        limiter = make()
        try:
            start.wait()
            decisions = await asyncio.gather(*(limiter.admit("k", policy, now=1000.0) for _ in range(count)))
        finally:  # never leave sockets open behind a failed burst
            await close(limiter)
        return [d.allowed for d in decisions]

    results.extend(asyncio.run(burst()))


async def test_connections_admitting_at_once_share_one_limit_exactly(make: Make, tmp_path: Path) -> None:
    policy = KeyPolicy(rpm=70, tpm=10**9)
    first = make()
    await first.record_tokens("k", 5, now=999.0)  # the schema in place before the race
    await close(first)
    start = threading.Barrier(4)
    results: list[list[bool]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_admit_from_worker, args=(make, policy, 40, start, results[i]))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted = sum(sum(r) for r in results)
    assert sum(len(r) for r in results) == 160 and admitted == 70
    if not isinstance(first, RateLimiter):
        return
    with sqlite3.connect(first.path) as conn:
        assert conn.execute("SELECT MAX(total), COUNT(*) FROM rate_log WHERE kind = 0").fetchone() == (70, 70)


async def test_tokens_counted_at_a_requests_end_reach_this_worker_at_once_and_the_others_within_the_hold(
        tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    policy = KeyPolicy(tpm=100)
    here, there = RateLimiter(db, HotPath(db, hold=0.05)), RateLimiter(db)  # two workers
    for key in ("a", "b"):
        assert (await here.admit(key, policy, now=0.0)).allowed
    assert here.record_tokens_now("a", 100, now=1.0)  # no commit of its own: it rides on the next admission here
    refused = await here.admit("a", policy, now=2.0)
    assert not refused.allowed and refused.retry_after == 59.0
    assert not (await there.admit("a", policy, now=2.0)).allowed  # committed with that admission: everywhere
    assert here.record_tokens_now("b", 100, now=1.0)
    await asyncio.sleep(0.1)  # no admission here within the hold: committed alone on the timer
    refused = await there.admit("b", policy, now=2.0)
    assert not refused.allowed and refused.retry_after == 59.0
    assert here.record_tokens_now("c", 100, now=1.0)
    here.hot.close()  # a worker stopping commits what it still holds
    assert not (await there.admit("c", policy, now=2.0)).allowed
    there.hot.close()


async def test_a_keys_token_records_held_together_write_the_rows_of_one_by_one(tmp_path: Path) -> None:
    """Records of one key held for the next write (one work, its newest row read once) write the rows the same
    records written one by one do: the totals in order, a clock moved back kept behind the newest row; records made
    after a transaction took the held ones wait for the next."""
    db = tmp_path / "cfai.db"
    held, alone = RateLimiter(db, HotPath(db, hold=60.0)), RateLimiter(db)
    policy = KeyPolicy(tpm=10**6)
    records = [(5, 10.0), (7, 11.0), (3, 10.5), (9, 12.0)]
    for key in ("held", "alone"):
        await alone.record_tokens(key, 4, now=1.0)  # a row before them, written elsewhere
    for tokens, now in records:
        assert held.record_tokens_now("held", tokens, now=now)
        await alone.record_tokens("alone", tokens, now=now)
    first = await held.admit("held", policy, now=13.0)  # carries them: this worker counts them at once
    assert first.headers["x-ratelimit-remaining-tokens"] == str(10**6 - 28)
    for tokens, now in records[:2]:  # after the take: a new group, committed at the close
        assert held.record_tokens_now("held", tokens, now=now + 10)
        await alone.record_tokens("alone", tokens, now=now + 10)
    held.hot.close()
    alone.hot.close()
    timed = RateLimiter(db, HotPath(db, hold=0.02))
    assert timed.record_tokens_now("timed", 5, now=30.0)
    await asyncio.sleep(0.1)  # committed alone on the timer: the next record is a new group
    assert timed.record_tokens_now("timed", 7, now=31.0)
    timed.hot.close()
    with sqlite3.connect(db) as conn:
        rows = {key: conn.execute("SELECT ts, total, units FROM rate_log WHERE key_id = ? AND kind = 1 ORDER BY total",
                                  (key,)).fetchall() for key in ("held", "alone", "timed")}
    assert rows["timed"] == [(30.0, 5, 5), (31.0, 12, 7)]
    assert rows["held"] == rows["alone"] == [(1.0, 4, 4), (10.0, 9, 5), (11.0, 16, 7), (11.0, 19, 3), (12.0, 28, 9),
                                             (20.0, 33, 5), (21.0, 40, 7)]


async def test_the_windows_an_older_cfai_kept_still_count(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE rate_requests (key_id TEXT NOT NULL, ts REAL NOT NULL);
            CREATE TABLE rate_tokens (key_id TEXT NOT NULL, ts REAL NOT NULL, tokens INTEGER NOT NULL);
            INSERT INTO rate_requests VALUES ('k', 10.0), ('k', 20.0), ('k', 20.0), ('j', 15.0);
            INSERT INTO rate_tokens VALUES ('k', 11.0, 30), ('k', 21.0, 50);
        """)
    limiter = RateLimiter(db)
    decision = await limiter.admit("k", KeyPolicy(rpm=5, tpm=100), now=30.0)
    assert decision.headers["x-ratelimit-remaining-requests"] == "1"  # 3 before, this one: 1 left of 5
    assert decision.headers["x-ratelimit-remaining-tokens"] == "20"
    assert not (await limiter.admit("k", KeyPolicy(rpm=4), now=30.0)).allowed
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "rate_requests" not in tables and "rate_tokens" not in tables


async def test_a_token_record_held_before_any_admission_makes_the_table_it_is_written_to(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db, HotPath(db, hold=600.0))
    assert limiter.record_tokens_now("k", 7, now=0.0)
    limiter.hot.close()  # commits what is held: the process's first write
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT key_id, kind, ts, total, units FROM rate_log").fetchall() == [("k", 1, 0.0, 7, 7)]
    conn.close()


def test_reset_format() -> None:
    assert [_reset(s) for s in (0, 0.2, 59, 60, 61, 3725)] == ["0s", "1s", "59s", "1m0s", "1m1s", "1h2m5s"]


def test_the_headers_resets_are_those_of_reset_at_every_edge_of_the_table() -> None:
    """decide takes a reset of a minute or less from a table (60 s included, '1m0s'), the others from `_reset`:
    the same text either way, for the minute's, the day's and the tokens' windows, before and past their edges."""
    now = 1000.0
    waits = (-3.5, -0.5, 0.0, 0.25, 1.0, 58.75, 59.0, 59.25, 60.0, 60.5, 61.0, 119.5, 3725.0, 90000.0)
    for wait in waits:
        minute, tokens = Window(1, now - MINUTE + wait), Window(3, now - MINUTE + wait)
        headers = decide(KeyPolicy(rpm=10, tpm=100), 1, now, minute, UNMEASURED, tokens).headers
        assert headers["x-ratelimit-reset-requests"] == headers["x-ratelimit-reset-tokens"] == _reset(wait), wait
        headers = decide(KeyPolicy(rpd=10), 1, now, UNMEASURED, Window(1, now - DAY + wait), UNMEASURED).headers
        assert headers["x-ratelimit-reset-requests"] == _reset(wait), wait
    assert decide(KeyPolicy(rpm=1), 1, now, UNMEASURED, UNMEASURED, UNMEASURED).headers[
        "x-ratelimit-reset-requests"] == "1m0s"  # an empty minute: a whole one


def test_a_limits_digits_are_made_once_for_as_many_limits_as_keys() -> None:
    """decide keeps each limit's digits (one per key's limit, bounded: forgotten all at once beyond 4,096)."""
    for rpm in [*range(1, 5001), 7, 10**12]:
        headers = decide(KeyPolicy(rpm=rpm, tpm=rpm * 7 + 1), 1, 0.0, UNMEASURED, UNMEASURED, UNMEASURED).headers
        assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-limit-tokens"]) == (
            str(rpm), str(rpm * 7 + 1))
        assert len(limit_rule._LIMITS) <= 4096


async def test_a_redis_restart_costs_no_admission_its_idle_connections_are_replaced() -> None:
    """Every pooled socket is dead after Redis restarts; the first command on each is sent again on a new one."""
    from tests.infra.servers import Missing, start_redis

    try:
        server = start_redis()
    except Missing as exc:
        pytest.skip(str(exc))
    limiter = RedisRateLimits(connect(server.url), "test:restart:")
    try:
        policy = KeyPolicy(rpm=100)
        # several sockets in the pool, all idle once the admissions are done
        assert all(d.allowed for d in await asyncio.gather(*(limiter.admit("k", policy, now=1.0)
                                                               for _ in range(4))))
        server.process.stop()
        server = start_redis(server.port)
        decisions = await asyncio.gather(*(limiter.admit("k", policy, now=2.0) for _ in range(4)))
        assert all(d.allowed for d in decisions)
        # counted by the new Redis, whose window starts empty
        assert sorted(int(d.headers["x-ratelimit-remaining-requests"]) for d in decisions) == [96, 97, 98, 99]
    finally:
        await limiter.close()
        server.process.stop()
