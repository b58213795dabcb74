"""Start and stop real PostgreSQL, Redis and S3-compatible (moto) servers for tests, on loopback, in temp dirs.

Each server is a child process in its own session (a Ctrl-C in the terminal reaches pytest, whose teardown
stops it), asked by the kernel to stop when pytest dies (PR_SET_PDEATHSIG), so none outlives the test run even
when pytest is killed. `Missing` means the server's binary or package is not installed: the fixtures skip on it
(fail under CI, which installs them). PostgreSQL refuses to run as root, so as root its processes run as the
`postgres` user the Debian package creates (or `nobody`), in a temp dir given to that user.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tests.servers import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class Missing(Exception):
    """The server's binary or package is not installed here (not: it failed to start)."""


def _die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child after its uid change, which would clear the setting
        ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
    return preexec


_LAUNCHER: list[ThreadPoolExecutor] = []
_LAUNCHER_LOCK = threading.Lock()


def _launcher() -> ThreadPoolExecutor:
    with _LAUNCHER_LOCK:
        if not _LAUNCHER:
            _LAUNCHER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-launcher"))
        return _LAUNCHER[0]


def _ids(user: pwd.struct_passwd | None) -> tuple[int | None, int | None, list[int] | None]:
    """Popen's user, group and extra_groups to run as `user` (None: as we are)."""
    return (None, None, None) if user is None else (user.pw_uid, user.pw_gid, [])


@dataclass
class Process:
    """One server process, its temp dir and its log; `stop()` ends it (politely, then not) and removes the dir."""

    name: str
    directory: Path
    stop_signal: int
    proc: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0  # seconds from launch until it answered
    _log: BinaryIO | None = field(default=None, repr=False)
    # What `launch` and `wait_until` were given, so `resume()` starts the same server again (same port, same data).
    _argv: tuple[list[str], pwd.struct_passwd | None, dict[str, str] | None] | None = field(default=None, repr=False)
    _ready: Callable[[], bool] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def launch(self, argv: list[str], *, user: pwd.struct_passwd | None = None,
               env: dict[str, str] | None = None) -> None:
        self._argv = (argv, user, env)
        if self._log is not None:
            self._log.close()
        log = self.log_path.open("ab")
        self._log = log
        uid, gid, groups = _ids(user)

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.directory, env=env, start_new_session=True,
                                    preexec_fn=_die_with_parent(self.stop_signal), user=uid, group=gid,
                                    extra_groups=groups)

        # PR_SET_PDEATHSIG fires when the launching *thread* ends: a server (re)started from a worker thread (a
        # test's `anyio.to_thread.run_sync(process.resume)`) would die with that thread. Such launches go
        # through one thread that lives as long as pytest.
        if threading.current_thread() is threading.main_thread():
            self.proc = popen()
        else:
            self.proc = _launcher().submit(popen).result()

    def wait_until(self, ready: Callable[[], bool], started: float) -> None:
        self._ready = ready
        deadline = started + START_TIMEOUT
        while not ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer in {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.started_in = time.monotonic() - started

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def halt(self) -> None:
        """Stop the server but keep its directory (its data): an outage that `resume()` ends."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and any children
                self.proc.wait()

    def resume(self) -> None:
        """Start the halted server again with the same argv (so the same port and data) and wait until it answers."""
        assert self._argv is not None and self._ready is not None, "resume() needs a launched server"
        if self.proc is not None and self.proc.poll() is None:
            return
        argv, user, env = self._argv
        started = time.monotonic()
        self.launch(argv, user=user, env=env)
        self.wait_until(self._ready, started)

    def restart(self) -> None:
        self.halt()
        self.resume()

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            if self._log is not None:
                self._log.close()
            shutil.rmtree(self.directory, ignore_errors=True)


def _answers(port: int, probe: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(probe)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


# --- PostgreSQL ---------------------------------------------------------------------------------------------

def postgres_bin() -> Path:
    """The newest PostgreSQL server's bin dir: Debian's /usr/lib/postgresql/N/bin, else `initdb` on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).with_name("postgres").exists():
        return Path(on_path).parent
    raise Missing("PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql")


def _unprivileged() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise Missing("running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


@dataclass
class PostgresServer:
    process: Process
    bin: Path
    port: int
    user: str = "cfai"
    database: str = "cfai_test"

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database on this server (a test that needs its own); its URL."""
        done = subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                               self.user, name], capture_output=True, env=_pg_env())
        if done.returncode:
            raise RuntimeError(f"createdb {name} failed: {done.stderr.decode(errors='replace').strip()}")
        return self.url_for(name)


def _pg_env() -> dict[str, str]:
    # Nothing from the caller's PG* settings (PGHOST, PGPASSWORD...) may redirect the tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def start_postgres() -> PostgresServer:
    bin_dir = postgres_bin()
    user = _unprivileged()
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="cfai-pg-"))  # short: the unix socket path must fit in 107 bytes
    if user is not None:
        os.chown(directory, user.pw_uid, user.pw_gid)
    process = Process("postgres", directory, signal.SIGINT)  # SIGINT: fast shutdown (clients are cut off)
    try:
        data = directory / "data"
        uid, gid, groups = _ids(user)
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "cfai", "--auth=trust", "-E", "UTF8",
                        "--locale=C", "--no-sync"], check=True, capture_output=True, cwd=directory,
                       env=_pg_env(), user=uid, group=gid, extra_groups=groups)
        port = free_port()
        # fsync and friends off: a test database that dies with the machine is fine, and start-up is faster.
        process.launch([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                        "-k", str(directory), "-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off", "-c", "max_connections=200"], user=user, env=_pg_env())
        pid_file = data / "postmaster.pid"

        def ready() -> bool:  # line 8 of postmaster.pid turns "ready" once connections are accepted
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                return False
            return len(lines) >= 8 and lines[7].strip() == "ready"

        process.wait_until(ready, started)
        server = PostgresServer(process, bin_dir, port)
        server.create_database(server.database)
        process.started_in = time.monotonic() - started
        return server
    except BaseException:
        process.stop()
        raise


# --- Redis --------------------------------------------------------------------------------------------------

@dataclass
class RedisServer:
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(port: int | None = None) -> RedisServer:
    """A Redis on a free port, or on `port` (a stopped one started again where its clients look for it)."""
    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                              else None)
    if binary is None:
        raise Missing("redis-server not found: apt-get install redis-server")
    started = time.monotonic()
    process = Process("redis", Path(tempfile.mkdtemp(prefix="cfai-redis-")), signal.SIGTERM)
    try:
        port = free_port() if port is None else port
        # No snapshots, no append-only file: nothing is written, and a stop is immediate.
        process.launch([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--dir", str(process.directory), "--daemonize", "no", "--logfile", ""])
        process.wait_until(lambda: _answers(port, b"PING\r\n", b"+PONG"), started)
        return RedisServer(process, port)
    except BaseException:
        process.stop()
        raise


# --- S3-compatible: moto's server ---------------------------------------------------------------------------

@dataclass
class S3Server:
    process: Process
    port: int
    region: str = "us-east-1"
    access_key_id: str = "cfai-test"
    secret_access_key: str = "cfai-test-secret"  # moto accepts any credentials

    @property
    def url(self) -> str:
        """The endpoint URL (what `[blobs] endpoint` will hold)."""
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self, name: str) -> str:
        """A new empty bucket (each test its own). A plain PUT: moto checks no signature, and this keeps the
        fixtures free of any S3 client library."""
        request = urllib.request.Request(f"{self.url}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200, answer.read()
        return name


def start_s3(port: int | None = None) -> S3Server:
    """moto on a free port, or on `port` (started again where its clients look for it: empty, no buckets)."""
    if not all(importlib.util.find_spec(name) for name in ("moto", "flask", "flask_cors")):
        raise Missing("moto's server (moto[s3], flask, flask-cors) is not installed: pip install -e '.[test]'")
    started = time.monotonic()
    process = Process("moto", Path(tempfile.mkdtemp(prefix="cfai-s3-")), signal.SIGTERM)
    try:
        port = free_port() if port is None else port
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "TEST_SERVER"))}
        process.launch([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        process.wait_until(ready, started)
        return S3Server(process, port)
    except BaseException:
        process.stop()
        raise
