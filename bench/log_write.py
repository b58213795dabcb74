"""What one exchange-log write costs as a one-shot makes it (open logs.db, one row, close), by journal setting.

Each way has its own fresh file in a temporary directory (a few writes first, so each starts as a used log); the
ways take turns, write by write, so the disk's state (other processes' writes, which make an fdatasync wait for
the file system's journal) falls on all alike. Prints each way's median, p25 and p75 in ms, then, with
`--syscalls` (needs strace), each way's fdatasync, unlink and ftruncate calls a write (the difference of two run
lengths, so opening the file once does not count). Figures only, never an assertion.

    python bench/log_write.py                  # 100 writes per way
    python bench/log_write.py --writes 300 --syscalls

Ways: `cfai` (store.exchanges.ExchangeLog.add, as built), then plain sqlite3 with the log's table: WAL with
synchronous FULL (the build before round 7) and NORMAL, the rollback journal (DELETE, TRUNCATE) with FULL, and WAL
kept between writes by a read-only connection closed last (its close cannot checkpoint, so the WAL stays;
evaluated in round 7, not used: docs/performance.md, "One-shot CLI round 7").
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cfai_cli.store.exchanges import SCHEMA, Exchange, ExchangeLog, Retention

WAYS = ("cfai", "wal-full", "wal-normal", "delete-full", "truncate-full", "wal-kept")
ROW = Exchange(cid="c0ffee000000", ts=0.0, api="chat", model_asked="m", model="@cf/m", system=None, prompt="hi",
               messages=[{"role": "user", "content": "hi"}], answer="x" * 600)


def write(way: str, path: Path, i: int) -> None:
    if way == "cfai":
        ExchangeLog(path).add(ROW, Retention(), now=float(i))
        return
    mode, _, sync = way.partition("-")
    conn = sqlite3.connect(path, timeout=2, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 2000")
    conn.execute(f"PRAGMA journal_mode = {'WAL' if mode == 'wal' else mode}")
    conn.execute(f"PRAGMA synchronous = {'FULL' if sync in ('full', 'kept') else 'NORMAL'}")
    conn.executescript(SCHEMA)
    reader = None
    if sync == "kept":
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        reader.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO exchanges (cid, ts, api, model_asked, prompt, messages, answer, tool_calls, attachments,"
                 " duration_ms) VALUES ('c', ?, 'chat', 'm', 'hi', '[]', ?, '[]', '[]', 1.0)", (float(i), "x" * 600))
    conn.execute("DELETE FROM exchanges WHERE id <= ?", (i - 10_000,))
    conn.execute("COMMIT")
    conn.close()
    if reader is not None:
        reader.close()


def timed(writes: int) -> None:
    paths = {way: Path(tempfile.mkdtemp(prefix="cfai-logw-")) / "logs.db" for way in WAYS}
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for i in range(writes + 3):
        for way in WAYS:
            start = time.perf_counter()
            write(way, paths[way], i)
            if i >= 3:
                times[way].append((time.perf_counter() - start) * 1000)
    print(f"| way | median | p25 | p75 | ({writes} writes each, interleaved) |\n| --- | ---: | ---: | ---: | --- |")
    for way, values in times.items():
        q = statistics.quantiles(values, n=4)
        print(f"| {way} | {statistics.median(values):.2f} ms | {q[0]:.2f} ms | {q[2]:.2f} ms | |")


def counted(way: str, writes: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace"
        subprocess.run(["strace", "-f", "-c", "-e", "trace=fdatasync,fsync,unlink,ftruncate", "-o", str(out),
                        sys.executable, __file__, "--one", way, "--writes", str(writes)], check=True)
        found = re.findall(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", out.read_text(), re.M)
    return {name: int(calls) for calls, name in found if name != "total"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--syscalls", action="store_true", help="count them under strace too")
    parser.add_argument("--one", choices=WAYS, help=argparse.SUPPRESS)  # a run under strace
    args = parser.parse_args()
    if args.one:
        path = Path(tempfile.mkdtemp(prefix="cfai-logw-")) / "logs.db"
        for i in range(args.writes):
            write(args.one, path, i)
        return
    timed(args.writes)
    if args.syscalls:
        print("\n| way | fdatasync + fsync | unlink | ftruncate | (a write) |\n| --- | ---: | ---: | ---: | --- |")
        for way in WAYS:
            short, long = counted(way, 10), counted(way, 30)
            per = {name: (long.get(name, 0) - short.get(name, 0)) / 20 for name in ("fdatasync", "fsync", "unlink",
                                                                                   "ftruncate")}
            print(f"| {way} | {per['fdatasync'] + per['fsync']:g} | {per['unlink']:g} | {per['ftruncate']:g} | |")


if __name__ == "__main__":
    main()
