"""What the in-process benches share: the fake upstream around a run, `cfai serve`'s app with a key and its
lifespan, and the scope of a POST as a server hands it to the app (bench/stream_cpu.py, bench/payload_cpu.py).

Called as an ASGI server would call it, in one process, so CPU time, cProfile and callgrind see only the proxy.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import free_port, wait_http  # noqa: E402

ACCOUNT = "0123456789abcdef0123456789abcdef"
Message = dict[str, Any]
App = Callable[..., Awaitable[None]]


def post_scope(path: str, body: bytes, key: str) -> Message:
    """An HTTP/1.1 POST of a JSON `body` to `path` with the bearer `key`, as uvicorn builds it."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"authorization", b"Bearer " + key.encode()),
                        (b"content-length", str(len(body)).encode())],
            "state": {}}


async def call(app: App, path: str, body: bytes, key: str, on_message: Callable[[Message], None]) -> None:
    """One POST through the app as an ASGI server makes it: the body whole, then the client stays connected until
    the answer's last body message; every message the app sends goes to `on_message` as it is sent."""
    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the client stays connected until the answer is over
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        on_message(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    await app(post_scope(path, body, key), receive, send)


@asynccontextmanager
async def serving_app(port: int, prefix: str) -> AsyncIterator[tuple[App, str]]:
    """The app `cfai serve` runs (keys on) against the fake upstream on `port`, in a fresh CFAI_HOME, started
    through its lifespan and stopped at the end: (the app, a key it accepts)."""
    from cfai_cli.server.app import create_app
    from cfai_cli.settings import load_settings
    from cfai_cli.store.keys import KeyStore

    home = tempfile.mkdtemp(prefix=prefix)
    settings = load_settings({"account_id": ACCOUNT, "api_token": "bench-token",
                              "api_base": f"http://127.0.0.1:{port}/client/v4"}, environ={"CFAI_HOME": home})
    key, _ = KeyStore(settings.database).create("bench")
    app = create_app(settings)
    startup: asyncio.Queue[Message] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    stopped, ready = asyncio.Event(), asyncio.Event()

    async def receive() -> Message:
        if startup.empty():
            await stopped.wait()
            return {"type": "lifespan.shutdown"}
        return await startup.get()

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            ready.set()
        elif message["type"] == "lifespan.startup.failed":
            raise SystemExit(message)

    life = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    await ready.wait()
    try:
        yield app, key
    finally:
        stopped.set()
        await life


def with_fake_upstream(run: Callable[[int], Awaitable[None]]) -> None:
    """Start bench/fake_upstream.py, run `run(its port)` on uvloop (when installed, as `cfai serve` does), stop it."""
    port = free_port()
    fake = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(port))  # type: ignore[arg-type]
    finally:
        fake.terminate()
        fake.wait(10)
