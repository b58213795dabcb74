"""SQLite's rate limiter keeps a key's windows across its connection's transactions (store.windows) while no other
connection commits: its decisions and rows stay those of a limiter that reads them every time, whatever another
connection or process commits between two admissions, a rolled-back transaction, a clock moved back, or a window's
oldest row leaving it."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyPolicy
from cfai_cli.store.limit_rule import DAY, Decision
from cfai_cli.store.limits import TRIM_EVERY, RateLimiter, prune

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rows(db: Path) -> list[tuple[str, int, float, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT key_id, kind, ts, total, units FROM rate_log ORDER BY 1, 2, 3, 4").fetchall()


async def test_another_connections_admission_between_two_of_this_one_is_counted(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    here, there = RateLimiter(db), RateLimiter(db)  # two workers: two connections
    policy = KeyPolicy(rpm=3, tpm=10**6)
    assert (await here.admit("k", policy, now=0.0)).headers["x-ratelimit-remaining-requests"] == "2"
    assert (await here.admit("j", policy, now=0.5)).allowed  # another key: this connection's windows of "k" stay
    assert (await there.admit("k", policy, now=1.0)).headers["x-ratelimit-remaining-requests"] == "1"
    # here read the windows of "k" at 0.0 and wrote since; there committed since: here reads them again
    assert (await here.admit("k", policy, now=2.0)).headers["x-ratelimit-remaining-requests"] == "0"
    refused = await here.admit("k", policy, now=3.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(57.0)
    await there.record_tokens("k", 100, now=4.0)
    refused = await here.admit("k", policy, now=5.0)
    assert not refused.allowed and refused.headers["x-ratelimit-remaining-tokens"] == str(10**6 - 100)
    here.hot.close()
    there.hot.close()


async def test_another_connections_admission_after_a_carried_record_is_counted(tmp_path: Path) -> None:
    """A transaction that carries a held token record ahead of an admission ends as any other: the next one reads
    the version again, and sees what another connection committed in between."""
    db = tmp_path / "cfai.db"
    here, there = RateLimiter(db, HotPath(db, hold=600.0)), RateLimiter(db)
    policy = KeyPolicy(rpm=4, tpm=10**6)
    assert (await here.admit("k", policy, now=0.0)).allowed
    for now in (1.0, 2.0):
        assert here.record_tokens_now("k", 10, now=now - 0.5)  # held: carried by the admission after it
        assert (await here.admit("k", policy, now=now)).allowed
    assert (await there.admit("k", policy, now=2.5)).headers["x-ratelimit-remaining-requests"] == "0"
    assert here.record_tokens_now("k", 10, now=2.75)
    refused = await here.admit("k", policy, now=3.0)
    assert not refused.allowed and refused.headers["x-ratelimit-remaining-tokens"] == str(10**6 - 30)
    here.hot.close()
    there.hot.close()


async def test_a_days_window_emptied_by_an_idle_day_counts_from_the_first_row_after(tmp_path: Path) -> None:
    """A day's window read empty (the key idle for a day) holds the rows admitted since, from the first of them:
    not the totals of a day's oldest row read before, which has left the window."""
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db)
    policy = KeyPolicy(rpd=10)
    for now in (0.0, 1.0, 2.0):
        assert (await limiter.admit("k", policy, now=now)).allowed
    for i, left in enumerate(("9", "8", "7")):  # read empty at DAY + 100, then kept across the transactions
        decision = await limiter.admit("k", policy, now=DAY + 100.0 + i)
        assert decision.headers["x-ratelimit-remaining-requests"] == left, i
    limiter.hot.close()


async def test_rows_another_process_deletes_are_gone_for_this_connection_too(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db)
    policy = KeyPolicy(rpd=2)
    for now in (0.0, 1.0):
        assert (await limiter.admit("k", policy, now=now)).allowed
    assert not (await limiter.admit("k", policy, now=2.0)).allowed
    # `cfai`'s retention pass in another process: the rows it deletes no longer count here
    code = ("from pathlib import Path; from cfai_cli.store.limits import prune; "
            f"print(prune(Path({str(db)!r}), now={DAY + 5.0}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "2"
    decision = await limiter.admit("k", policy, now=3.0)
    assert decision.allowed and decision.headers["x-ratelimit-remaining-requests"] == "1"
    assert prune(db, now=DAY + 10.0) == 1  # and here, in this process, on a connection of its own
    assert (await limiter.admit("k", policy, now=4.0)).headers["x-ratelimit-remaining-requests"] == "1"
    limiter.hot.close()


async def test_an_admission_rolled_back_with_its_transaction_was_never_counted(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    hot = HotPath(db)
    limiter = RateLimiter(db, hot)
    policy = KeyPolicy(rpm=1)

    def fails(conn: sqlite3.Connection) -> None:
        raise RuntimeError("a bug in another request's piece")

    async def piece() -> None:
        await hot.run(lambda conn: None)

    # One tick: the first piece runs alone; the admission and the failing piece share a transaction, rolled back
    # when the piece fails and run again without it: the admission counts once, not twice.
    first, decision, failure = await asyncio.gather(piece(), limiter.admit("k", policy, now=0.0), hot.run(fails),
                                                    return_exceptions=True)
    assert first is None and isinstance(failure, RuntimeError)
    assert isinstance(decision, Decision) and decision.allowed
    assert not (await limiter.admit("k", policy, now=1.0)).allowed
    assert (await limiter.admit("k", policy, now=60.5)).allowed
    assert [row[2:] for row in _rows(db)] == [(0.0, 1, 1), (60.5, 2, 1)]
    hot.close()


async def test_a_clock_moved_back_and_an_oldest_row_leaving_read_the_windows_again(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db)
    policy = KeyPolicy(rpm=2, tpm=50)
    assert (await limiter.admit("k", policy, now=0.0)).allowed
    assert (await limiter.admit("k", policy, now=70.0)).allowed  # read again: the row at 0.0 left the window
    refused = await limiter.admit("k", policy, now=30.0)  # back before that read: the row at 0.0 counts again
    assert not refused.allowed and refused.retry_after == pytest.approx(30.0)
    assert (await limiter.admit("k", policy, now=80.0)).allowed
    assert not (await limiter.admit("k", policy, now=129.0)).allowed  # 70.0 and 80.0: full
    decision = await limiter.admit("k", policy, now=130.5)  # 70.0 left its window; 80.0 and this one
    assert decision.allowed and decision.headers["x-ratelimit-remaining-requests"] == "0"
    assert limiter.record_tokens_now("k", 50, now=131.0)  # rides on the next admission, which counts it
    refused = await limiter.admit("k", policy, now=140.6)  # 80.0 left: a request would be admitted, not its tokens
    assert not refused.allowed and refused.reason == "this key's limit of 50 tokens per minute"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0" and refused.retry_after == pytest.approx(50.4)
    refused = await limiter.admit("k", policy, now=190.8)  # the requests' rows left; the tokens' has not
    assert not refused.allowed and refused.reason == "this key's limit of 50 tokens per minute"
    decision = await limiter.admit("k", policy, now=191.0)  # the tokens' oldest row leaves the window at 191.0
    assert decision.allowed and decision.headers["x-ratelimit-remaining-tokens"] == "50"
    limiter.hot.close()


async def test_decisions_and_rows_are_those_of_a_limiter_that_reads_every_time(tmp_path: Path) -> None:
    """Random sequences of admissions (alone and a tick's several, several keys and policies, fan-out units, a
    clock moving back, minutes and days passing), token records (held for the next write and written at once),
    trims and another connection's deletions: the limiter that keeps its windows decides and writes exactly what
    one whose connection is new for every step (nothing kept) does."""
    rng = random.Random(10)
    kept_db, fresh_db = tmp_path / "kept.db", tmp_path / "fresh.db"
    kept = RateLimiter(kept_db, HotPath(kept_db, hold=600.0))
    fresh = RateLimiter(fresh_db)
    policies = [KeyPolicy(rpm=5, tpm=60), KeyPolicy(rpm=4, rpd=12, tpm=80), KeyPolicy(tpm=40), KeyPolicy(rpd=6),
                KeyPolicy(rpm=3)]
    t, refused, kinds = 0.0, 0, set()
    for step in range(700):
        t += rng.choice((0.0, 0.2, 1.0, 5.0, 15.0, 30.0, 61.0, -0.5, -20.0)) + (DAY / 3 if step % 150 == 149 else 0)
        key = rng.choice(("a", "b"))
        policy = policies[rng.randrange(len(policies))] if rng.random() < 0.1 else policies[0 if key == "a" else 1]
        roll = rng.random()
        fresh.hot.close()
        fresh.hot = HotPath(fresh_db)  # a new connection: it knows no window
        if roll < 0.25:
            tokens = rng.choice((5, 20, 45))
            if rng.random() < 0.5:
                assert kept.record_tokens_now(key, tokens, now=t)
            else:
                await kept.record_tokens(key, tokens, now=t)
            await fresh.record_tokens(key, tokens, now=t)
            continue
        if roll < 0.27:
            assert prune(kept_db, now=t) == prune(fresh_db, now=t)  # another connection deletes old rows
            continue
        times = [(t + rng.choice((0.0, 0.1, 2.0, -0.3)), rng.choice((1, 1, 2))) for _ in range(rng.randint(1, 4))]
        got = await asyncio.gather(*(kept.admit(key, policy, now=now, units=units) for now, units in times))
        want = await asyncio.gather(*(fresh.admit(key, policy, now=now, units=units) for now, units in times))
        assert got == want, (step, key, policy, times)
        refused += sum(not decision.allowed for decision in got)
        kinds |= {decision.reason.split(" of ")[1].split(" ", 1)[1] for decision in got if not decision.allowed}
    kept.hot.close()
    fresh.hot.close()
    assert refused > 50 and kinds == {"requests per minute", "requests per day", "tokens per minute"}
    assert _rows(kept_db) == _rows(fresh_db)


async def test_token_rows_trimmed_away_start_the_totals_again_as_a_read_would(tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    limiter = RateLimiter(db, HotPath(db, hold=600.0))
    policy = KeyPolicy(tpm=1000)
    await limiter.record_tokens("k", 10, now=0.0)
    assert (await limiter.admit("k", policy, now=1.0)).headers["x-ratelimit-remaining-tokens"] == "990"
    for i in range(TRIM_EVERY - 1):  # the last one trims the key's rows older than a minute: the token row at 0.0
        assert (await limiter.admit("k", policy, now=100.0 + i * 0.1)).allowed
    assert limiter.record_tokens_now("k", 5, now=107.0)
    assert (await limiter.admit("k", policy, now=108.0)).headers["x-ratelimit-remaining-tokens"] == "995"
    limiter.hot.close()
    assert [row[2:] for row in _rows(db) if row[1] == 1] == [(107.0, 5, 5)]


async def test_a_keys_admissions_one_after_another_read_its_windows_once(tmp_path: Path) -> None:
    """What the windows kept are for: a key's admissions and token records on one connection read its windows once,
    until another connection commits (statements seen through sqlite3's trace callback)."""
    db = tmp_path / "cfai.db"
    hot = HotPath(db, hold=600.0)
    limiter, there = RateLimiter(db, hot), RateLimiter(db)
    policy = KeyPolicy(rpm=10**6, tpm=10**9)
    await limiter.admit("k", policy, now=0.0)
    conn = hot.connections.lend()
    assert conn is not None
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    hot.connections.give_back()
    for i in range(1, 6):
        assert limiter.record_tokens_now("k", 5, now=i - 0.5)
        assert (await limiter.admit("k", policy, now=float(i))).allowed
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    assert reads == [] and sum(sql.startswith("INSERT") for sql in statements) == 10
    await there.admit("j", policy, now=6.0)
    assert (await limiter.admit("k", policy, now=7.0)).headers["x-ratelimit-remaining-tokens"] == str(10**9 - 25)
    assert sum(sql.startswith("SELECT") for sql in statements) == 1
    hot.close()
    there.hot.close()


async def test_the_connection_holds_no_read_between_its_transactions(tmp_path: Path) -> None:
    """The hot path's statements run on one cursor kept by the connection (store.windows): none of them may leave a
    statement stepping once its transaction has ended, which would hold a read of an old snapshot and keep every
    other connection's checkpoint from truncating the WAL."""
    db = tmp_path / "cfai.db"
    hot = HotPath(db, hold=600.0)
    limiter = RateLimiter(db, hot)
    policy = KeyPolicy(rpm=10**6, rpd=10**7, tpm=10**9)
    for i in range(TRIM_EVERY + 2):  # through a trim; the windows read again at 0.0 and at 61.0
        assert (await limiter.admit("k", policy, now=i * 61.0 if i < 2 else 61.0 + i)).allowed
        assert limiter.record_tokens_now("k", 5, now=61.5 + i)
    await limiter.record_tokens("k", 5, now=200.0)
    conn = hot.connections.lend()
    assert conn is not None and not conn.in_transaction
    hot.connections.give_back()
    with sqlite3.connect(db, isolation_level=None) as other:
        other.execute("INSERT INTO rate_log VALUES ('j', 0, 1.0, 1, 1)")  # WAL frames to copy and truncate
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # 0: not blocked by a reader
    other.close()
    hot.close()
