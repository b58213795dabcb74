"""Batches and files on both engines (the `database` fixture: the SQLite file, then PostgreSQL): leases taken by
several claimers at once go to one each, the owners' quotas hold under concurrent uploads, list cursors by
insertion order neither repeat nor skip, the CLI's NULL owner matches only itself, and retention."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from cfai_cli.store.batches import ACTIVE, BatchStore, Line, prune
from cfai_cli.store.files import FileQuotaExceeded, FileStore, StoredFile
from cfai_cli.store.sql import Cursor, Database, Tx
from tests.databases import another

CHAT = "/v1/chat/completions"


def new_batch(store: BatchStore, batch_id: str, *, owner: str | None = None, created_at: int = 0) -> None:
    store.create(batch_id=batch_id, owner=owner, endpoint=CHAT, input_file_id=f"file-{batch_id}",
                 completion_window="24h", metadata=None, created_at=created_at, expires_at=created_at + 86400)


def test_claimers_at_once_take_each_batch_once(database: Path | str) -> None:
    store = BatchStore(database)
    ids = [f"batch_{n:02d}" for n in range(24)]
    for batch_id in ids:
        new_batch(store, batch_id)
    # Four replicas (each its own connection pool), released together, each claiming a few at a time.
    claimers = [BatchStore(another(database)) for _ in range(4)]
    start = threading.Barrier(len(claimers))
    taken: dict[str, list[str]] = {}

    def run(n: int, claimer: BatchStore) -> None:
        mine: list[str] = []
        start.wait()
        while got := claimer.claim(f"holder{n}", now=100.0, ttl=60.0, limit=3):
            mine += got
        taken[f"holder{n}"] = mine

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for claimer in claimers:
        claimer.db.close()
    counts = Counter(b for mine in taken.values() for b in mine)
    assert sorted(counts) == ids and set(counts.values()) == {1}  # every batch claimed, none twice
    for holder, mine in taken.items():  # and the rows agree with what each claimer was told
        assert all(store.renew(b, holder, now=101.0, ttl=60.0) for b in mine)


def test_a_lease_taken_over_stops_the_old_holders_writes(database: Path | str) -> None:
    store = BatchStore(database)
    new_batch(store, "batch_a")
    assert store.claim_one("batch_a", "one", now=10.0, ttl=5.0)
    lines = [Line(1, "c1", "{}"), Line(2, "c2", "{}")]  # numbered from 1, as in the file
    store.start("batch_a", "one", lines, now=10)
    store.start("batch_a", "one", lines, now=10)  # again (a restart validating again): each line kept once
    assert [ln.line for ln in store.pending("batch_a")] == [1, 2]
    assert not store.claim_one("batch_a", "two", now=14.0, ttl=5.0)  # still held
    assert store.finish_line("batch_a", "one", 1, ok=True, output={"n": 1}, tokens=(3, 4))
    assert not store.finish_line("batch_a", "one", 1, ok=True, output={"n": 1})  # written once only
    assert store.claim("two", now=16.0, ttl=5.0, limit=5) == ["batch_a"]  # "one" stopped renewing
    with pytest.raises(Exception, match="batch_a"):
        store.finish_line("batch_a", "one", 2, ok=True, output={})
    assert store.finish_line("batch_a", "two", 2, ok=False, output={"n": 2})
    row = store.load("batch_a")
    assert (row["completed"], row["failed"], row["prompt_tokens"], row["status"]) == (1, 1, 3, "in_progress")
    assert [ok for ok, _ in store.results("batch_a")] == [True, False]


def test_pages_by_insertion_order_with_equal_times(database: Path | str) -> None:
    store = BatchStore(database)
    ids = [f"batch_{n}" for n in range(7)]
    for batch_id in ids:  # the same second: created_at cannot order them, insertion order does
        new_batch(store, batch_id, owner="key_a", created_at=5)
    new_batch(store, "batch_cli")  # the CLI's (NULL owner): not key_a's, and key_a's are not its
    seen: list[str] = []
    after = None
    while True:
        rows, more = store.page(owner="key_a", limit=3, after=after)
        seen += [r["id"] for r in rows]
        if not more:
            break
        after = rows[-1]["id"]
    assert seen == ids[::-1]
    assert [r["id"] for r in store.page(owner=None, limit=10, after=None)[0]] == ["batch_cli"]
    assert store.get("batch_cli", owner="key_a") is None and store.get("batch_0", owner=None) is None
    everything, _ = store.page_all(limit=20, after="batch_3")
    assert [r["id"] for r in everything] == ["batch_2", "batch_1", "batch_0"]
    assert store.request_cancel("batch_0", owner=None, now=9) is None  # another owner's: untouched
    assert store.request_cancel("batch_0", owner="key_a", now=9)["status"] == "cancelling"  # type: ignore[index]


def _record(n: int, owner: str | None, size: int = 10, purpose: str = "batch") -> StoredFile:
    return StoredFile(id=f"file-{n}", owner=owner, purpose=purpose, filename=f"{n}.jsonl", bytes=size,
                      created_at=1, expires_at=None, lines=None)


def _scratch(store: FileStore, name: str) -> Path:
    path = store.scratch(name)
    path.write_bytes(b"x" * 10)
    return path


class _SlowTx:
    def __init__(self, tx: Tx, pause: float, busy: threading.Event | None) -> None:
        self.tx, self.pause, self.busy = tx, pause, busy

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        found = self.tx.execute(sql, parameters)
        if self.busy is not None:
            self.busy.set()  # a statement of this transaction has run: it holds what it locks
        time.sleep(self.pause)
        return found

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any:
        return self.tx.executemany(sql, seq_of_parameters)


class Slow(Database):
    """A replica on a slow network: a pause after every statement, so a count-then-insert the database does not
    serialise lets the other uploads in between (without it the race window is too short to show). `busy`, when
    given, is set once a statement of a transaction has run (a test waits on it instead of guessing a sleep)."""

    def __init__(self, inner: Database, pause: float = 0.02, busy: threading.Event | None = None) -> None:
        self.inner, self.engine, self.label, self.pause, self.busy = inner, inner.engine, inner.label, pause, busy

    def transaction(self, *, write: bool = False, lock: str | None = "cfai") -> AbstractContextManager[Tx]:
        @contextmanager
        def slow() -> Iterator[Tx]:
            with self.inner.transaction(write=write, lock=lock) as tx:
                yield _SlowTx(tx, self.pause, self.busy)

        return slow()

    def close(self) -> None:
        self.inner.close()


def test_an_owners_quota_holds_under_concurrent_uploads(database: Path | str, tmp_path: Path) -> None:
    stores = [FileStore(Slow(another(database)), tmp_path / "files") for _ in range(3)]
    outcomes: list[str] = []

    async def upload(store: FileStore, n: int) -> None:
        try:
            await store.add(_record(n, "key_q"), _scratch(store, f"u{n}"), quota=(3, 1000))
            outcomes.append("stored")
        except FileQuotaExceeded:
            outcomes.append("refused")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(upload, stores[n % 3], n)

    anyio.run(main)
    for store in stores:
        store.db.close()
    assert sorted(outcomes) == ["refused"] * 9 + ["stored"] * 3
    store = FileStore(database, tmp_path / "files")
    files, more = store.page(owner="key_q", purpose=None, limit=20, after=None, ascending=True)
    assert len(files) == 3 and not more
    assert sorted(os.listdir(tmp_path / "files")) == sorted(f.id for f in files)  # refused ones left no bytes


def test_files_page_both_ways_and_by_owner(database: Path | str, tmp_path: Path) -> None:
    store = FileStore(database, tmp_path / "files")

    async def main() -> None:
        for n in range(5):
            await store.add(_record(n, None, purpose="batch" if n % 2 else "user_data"), _scratch(store, str(n)))
        await store.add(_record(9, "key_b"), _scratch(store, "9"))

    anyio.run(main)
    first, more = store.page(owner=None, purpose=None, limit=2, after=None, ascending=True)
    rest, _ = store.page(owner=None, purpose=None, limit=10, after=first[-1].id, ascending=True)
    assert [f.id for f in first + rest] == [f"file-{n}" for n in range(5)] and more
    newest, _ = store.page(owner=None, purpose="batch", limit=10, after="file-3", ascending=False)
    assert [f.id for f in newest] == ["file-1"]
    assert store.get("file-9", owner=None) is None and store.get("file-9", owner="key_b") is not None
    assert not anyio.run(lambda: store.delete("file-9", owner=None))
    assert anyio.run(lambda: store.delete("file-9", owner="key_b"))
    assert store.get("file-9", owner="key_b") is None


def test_retention_takes_finished_batches_and_expired_files(database: Path | str, tmp_path: Path) -> None:
    store, files = BatchStore(database), FileStore(database, tmp_path / "files")
    anyio.run(lambda: files.add(_record(1, None), _scratch(files, "in")))
    anyio.run(lambda: files.add(_record(2, None), _scratch(files, "out")))
    new_batch(store, "batch_old", created_at=10)
    new_batch(store, "batch_running", created_at=10)
    assert store.claim_one("batch_old", "h", now=1.0, ttl=1.0)
    store.update("batch_old", "h", status="completed", output_file_id="file-2")
    removed: list[str] = []
    assert prune(database, removed.extend, before=100, now=200) == (1, 1)
    assert removed == ["file-2"]
    assert store.find("batch_old") is None and store.find("batch_running")["status"] in ACTIVE  # type: ignore[index]
    assert files.get("file-1", owner=None) is not None and files.get("file-2", owner=None) is None


def test_a_claim_waits_for_the_holders_write_in_flight(database: Path | str) -> None:
    store = BatchStore(database)
    new_batch(store, "batch_w")
    assert store.claim_one("batch_w", "one", now=10.0, ttl=5.0)
    store.start("batch_w", "one", [Line(1, "c1", "{}")], now=10)
    busy = threading.Event()
    slow = BatchStore(Slow(another(database), pause=0.1, busy=busy))  # the holder, on a slow network: ~0.3 s a write
    slow.load("batch_w")
    busy.clear()
    events: list[str] = []

    def write() -> None:
        slow.finish_line("batch_w", "one", 1, ok=True, output={})
        events.append("written")

    holder = threading.Thread(target=write)
    holder.start()
    assert busy.wait(10)  # the holder has checked its lease (which ran out at 15) and is writing
    assert store.claim("two", now=100.0, ttl=5.0, limit=1) == ["batch_w"]
    events.append("claimed")
    holder.join()
    slow.db.close()
    # The write that checked the lease lands before anyone else holds it, never after (the row lock).
    assert events == ["written", "claimed"]
    assert store.load("batch_w")["completed"] == 1
