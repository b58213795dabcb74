"""The real servers of tests/infra start, answer the client libraries cfai will use, and leave nothing behind.

psycopg 3 for PostgreSQL (sync and async), redis-py's asyncio client for Redis, obstore for S3. Each test
writes with one and reads back, on names no other test uses.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import obstore
import psycopg
import pytest
import redis.asyncio as aredis
from obstore.store import S3Store

from tests.infra import fixtures
from tests.infra.servers import Missing, PostgresServer, RedisServer, S3Server, start_redis

ROOT = Path(__file__).resolve().parents[2]


def test_postgres_keeps_a_row_and_row_locks_make_increments_exact(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database(f"smoke_{secrets.token_hex(4)}")
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)  # the fixture's settings are the ones in force
        conn.execute("CREATE TABLE spend (key_id TEXT PRIMARY KEY, neurons DOUBLE PRECISION NOT NULL, meta JSONB)")
        conn.execute("INSERT INTO spend VALUES (%s, %s, %s::jsonb)", ("k1", 0.0, '{"owner": "smoke"}'))
    # Twenty connections read-modify-write one row at once; SELECT ... FOR UPDATE makes them take turns.
    async def bump() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            row = await (await conn.execute("SELECT neurons FROM spend WHERE key_id = 'k1' FOR UPDATE")).fetchone()
            assert row is not None
            await asyncio.sleep(0.001)  # widen the window a lost update would need
            await conn.execute("UPDATE spend SET neurons = %s WHERE key_id = 'k1'", (row[0] + 1.5,))

    async def bump_all() -> None:
        await asyncio.gather(*(bump() for _ in range(20)))

    asyncio.run(bump_all())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT neurons, meta->>'owner' FROM spend").fetchall() == [(30.0, "smoke")]


# INCR and the expiry in one atomic step: a counter can never be left without its expiry.
COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def test_redis_lua_counts_exactly_under_concurrency_and_expires(redis_server: RedisServer) -> None:
    async def run() -> None:
        client = aredis.from_url(redis_server.url)
        try:
            count = client.register_script(COUNT)
            key = f"smoke:{secrets.token_hex(8)}"
            answers = await asyncio.gather(*(count(keys=[key], args=[60_000]) for _ in range(50)))
            assert sorted(n for n, _ in answers) == list(range(1, 51))
            assert all(0 < ttl <= 60_000 for _, ttl in answers)
            brief = f"smoke:{secrets.token_hex(8)}"
            assert (await count(keys=[brief], args=[50]))[0] == 1
            await asyncio.sleep(0.2)
            assert await client.exists(brief) == 0
        finally:
            await client.aclose()

    asyncio.run(run())


def test_s3_put_get_list_delete_with_an_unguessable_key(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket(f"smoke-{secrets.token_hex(6)}")
    store = S3Store(bucket, endpoint=s3_server.url, region=s3_server.region,
                    access_key_id=s3_server.access_key_id, secret_access_key=s3_server.secret_access_key,
                    client_options={"allow_http": True})
    key = f"images/{secrets.token_urlsafe(24)}.png"
    body = b"\x89PNG\r\n" + secrets.token_bytes(64)

    async def run() -> None:
        await obstore.put_async(store, key, body, attributes={"Content-Type": "image/png"})
        got = await obstore.get_async(store, key)
        assert bytes(await got.bytes_async()) == body
        assert got.attributes.get("Content-Type") == "image/png"
        listed = [meta["path"] for batch in obstore.list(store, prefix="images/") for meta in batch]
        assert listed == [key]
        await obstore.delete_async(store, key)
        with pytest.raises(FileNotFoundError):
            await obstore.get_async(store, key)

    asyncio.run(run())


def test_stop_ends_the_server_and_removes_its_directory() -> None:
    try:
        server = start_redis()
    except Missing as exc:
        pytest.skip(str(exc))
    server.process.stop()
    assert server.process.proc is not None and server.process.proc.returncode is not None
    assert not server.process.directory.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie has ended
    except (OSError, IndexError):
        return True


def test_a_server_dies_with_the_process_that_started_it() -> None:
    """pytest killed outright (no teardown) must not leave a server running: PR_SET_PDEATHSIG."""
    code = ("import time; from tests.infra.servers import start_redis; s = start_redis(); "
            "print(s.process.proc.pid, s.process.directory, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        if not line:
            pytest.skip("redis-server is not installed")
        pid, directory = int(line.split()[0]), Path(line.split()[1])
        assert not _gone(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not _gone(pid):
            assert time.monotonic() < deadline, f"redis-server {pid} outlived the process that started it"
            time.sleep(0.02)
        shutil.rmtree(directory)  # what a killed pytest does leave: the temp dir
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_an_absent_server_skips_its_tests_but_fails_them_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> RedisServer:
        raise Missing("redis-server not found")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        next(fixtures._serve(absent))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"redis-server not found \(\.ci/run installs it"):
        next(fixtures._serve(absent))
    assert os.environ["CI"] == "true"
