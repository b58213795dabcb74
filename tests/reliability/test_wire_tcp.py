"""Slow and oversized requests against a real `cfai serve` over TCP, with raw sockets: what in-process tests
cannot show (resets, half-sent heads, a client still uploading when the answer comes).

One server for the module (offline, no keys, small limits): max_json_mb 1, body_timeout 1.5 s, header_timeout
1 s. Timing figures are bounds that prove "no hang", not performance claims.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cfai_cli.server.body import DRAIN_BYTES, DRAIN_SECONDS
from tests.openai_schema import validate
from tests.servers import free_port, stop_server, wait_for_health

BODY_TIMEOUT = 1.5
HEADER_TIMEOUT = 1.0
LIMIT = 1024 * 1024
SLACK = 1.5
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("wire-home")
    (home / "config.toml").write_text(f"max_json_mb = 1.0\nmax_body_mb = 2.0\nbody_timeout = {BODY_TIMEOUT}\n"
                                      f"header_timeout = {HEADER_TIMEOUT}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CFAI_", "CLOUDFLARE_"))}
    env["CFAI_HOME"] = str(home)
    chosen = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--no-auth", "--no-ui",
                             "--port", str(chosen)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_health(proc, chosen)
        yield chosen
    finally:
        _, err = stop_server(proc)
        assert "Traceback" not in err, err


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def head(path: str, *lines: str, method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{line}\r\n" for line in lines)
            + "\r\n").encode()


class Answer:
    def __init__(self, raw: bytes, ended: str) -> None:
        self.raw = raw
        self.ended = ended  # "eof", "reset", "timeout" or "open" (a complete answer, connection still open)
        top, _, self.body = raw.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/1.1 ") else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    def error(self, status: int, code: str) -> dict[str, object]:
        assert self.status == status, self.raw[:400]
        assert len(self.body) == int(self.headers["content-length"]), self.raw[:400]
        payload = json.loads(self.body)
        validate(payload, "ErrorResponse")
        assert payload["error"]["code"] == code, payload
        return dict(payload["error"])


def read_answer(sock: socket.socket, seconds: float, *, until_close: bool = True, got: bytes = b"") -> Answer:
    """Everything the server sends within `seconds` (to its close, or to one complete answer)."""
    deadline = time.monotonic() + seconds
    data = bytearray(got)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Answer(bytes(data), "timeout")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return Answer(bytes(data), "timeout")
        except ConnectionResetError:
            return Answer(bytes(data), "reset")
        if not chunk:
            return Answer(bytes(data), "eof")
        data.extend(chunk)
        if not until_close and b"\r\n\r\n" in data:
            answer = Answer(bytes(data), "open")
            if len(answer.body) >= int(answer.headers.get("content-length", "0")):
                return answer


def upload(sock: socket.socket, total: int, *, chunked: bool, pause: float, read_along: bool) -> tuple[int, bytes]:
    """Send `total` body bytes in 64 KiB pieces; with `read_along`, collect what the server says meanwhile.
    Stops at the first send error (the server closed). Returns (bytes sent, bytes received)."""
    piece = b"x" * 65536
    sent = 0
    got = bytearray()
    try:
        while sent < total:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            if pause:
                time.sleep(pause)
            if read_along:
                sock.settimeout(0.0005)
                try:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got.extend(chunk)
                except TimeoutError:
                    pass
                finally:
                    sock.settimeout(10)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent, bytes(got)


# ---- oversized bodies: the 413 reaches the client ----------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_413_reaches_a_client_still_sending_its_body_slowly(port: int, chunked: bool) -> None:
    with connect(port) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {8 * LIMIT}"
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json", framing))
        started = time.monotonic()
        sent, got = upload(sock, 4 * LIMIT, chunked=chunked, pause=0.01, read_along=True)
        answer = read_answer(sock, DRAIN_SECONDS + SLACK, got=got)
    answer.error(413, "request_too_large")
    assert answer.headers["connection"] == "close" and answer.ended == "eof"
    assert got.startswith(b"HTTP/1.1 413"), "the answer came while the client was still sending"
    assert sent > LIMIT and time.monotonic() - started < DRAIN_SECONDS + 5


def test_a_413_reaches_a_client_that_reads_only_after_sending_everything(port: int) -> None:
    """Most HTTP libraries write the whole body before reading: the server reads on after its answer, so the
    close is clean (no reset) and the 413 is there to read."""
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json", f"Content-Length: {6 * LIMIT}"))
        sent, _ = upload(sock, 6 * LIMIT, chunked=False, pause=0, read_along=False)
        answer = read_answer(sock, DRAIN_SECONDS + SLACK)
    assert sent == 6 * LIMIT
    answer.error(413, "request_too_large")
    assert answer.ended == "eof"


def test_an_endless_upload_is_cut_off_after_the_answer(port: int) -> None:
    """The server reads on only so far (DRAIN_BYTES, DRAIN_SECONDS): then it closes, answer delivered."""
    with connect(port) as sock:
        sock.sendall(head("/v1/embeddings", "Content-Type: application/json", "Transfer-Encoding: chunked"))
        started = time.monotonic()
        sent, got = upload(sock, 4 * DRAIN_BYTES, chunked=True, pause=0, read_along=True)
        elapsed = time.monotonic() - started
    assert got.startswith(b"HTTP/1.1 413")
    assert sent < 4 * DRAIN_BYTES and elapsed < DRAIN_SECONDS + 5


# ---- slow requests: deadlines --------------------------------------------------------------------------------


def test_a_body_that_stalls_gets_a_408_and_the_connection_closes(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json", f"Content-Length: {len(CHAT)}")
                     + CHAT[:10])
        started = time.monotonic()
        answer = read_answer(sock, BODY_TIMEOUT + SLACK + 2)
    elapsed = time.monotonic() - started
    error = answer.error(408, "request_timeout")
    assert "body" in str(error["message"]) and answer.ended == "eof"
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + SLACK + 1


def test_a_body_that_drips_steadily_is_still_held_to_the_deadline(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json", "Content-Length: 100000"))
        started = time.monotonic()
        answer = Answer(b"", "timeout")
        for _ in range(int((BODY_TIMEOUT + SLACK) / 0.1)):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            sock.settimeout(0.001)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                pass
        answer = read_answer(sock, SLACK + 1)
    answer.error(408, "request_timeout")
    assert time.monotonic() - started < BODY_TIMEOUT + SLACK + 2


@pytest.mark.parametrize("sent", [b"", b"POST /v1/chat/comp", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0"])
def test_a_half_sent_request_head_does_not_hold_the_connection(port: int, sent: bytes) -> None:
    with connect(port) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        answer = read_answer(sock, HEADER_TIMEOUT + SLACK + 3)
    elapsed = time.monotonic() - started
    assert answer.ended == "eof" and HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + SLACK
    if sent:
        answer.error(408, "request_timeout")
    else:
        assert answer.raw == b""  # a connection that never said anything is just closed


def test_headers_trickling_in_byte_by_byte_are_held_to_the_deadline(port: int) -> None:
    whole = head("/v1/models", method="GET")
    with connect(port) as sock:
        started = time.monotonic()
        for byte in whole[:-2]:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                break
        answer = read_answer(sock, 2)
    assert answer.ended in ("eof", "reset") and time.monotonic() - started < HEADER_TIMEOUT + SLACK + 1


def test_the_head_deadline_runs_from_the_last_answer_not_the_connections_start(port: int) -> None:
    """The deadline is re-armed after each answer while the timer armed when the connection opened is still
    pending (server.protocol keeps one timer lazily): a half-sent second head gets its 408 a whole
    header_timeout after the first answer, not when the first deadline would have passed."""
    with connect(port) as sock:
        time.sleep(HEADER_TIMEOUT * 0.6)  # the first head arrives late in its deadline
        sock.sendall(head("/v1/models", method="GET"))
        first = read_answer(sock, 10, until_close=False)
        answered = time.monotonic()
        assert first.status == 200 and first.ended == "open", first.raw[:300]
        sock.sendall(b"GET /v1/mod")
        second = read_answer(sock, HEADER_TIMEOUT + SLACK + 3)
    elapsed = time.monotonic() - answered
    second.error(408, "request_timeout")
    assert second.ended == "eof" and HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + SLACK


def test_keep_alive_and_a_slow_but_timely_body_still_work(port: int) -> None:
    """The head deadline runs only while a head is awaited: a body that takes longer than header_timeout (but
    less than body_timeout) is fine, and so is a second request on the same connection."""
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json", f"Content-Length: {len(CHAT)}")
                     + CHAT[:10])
        time.sleep(HEADER_TIMEOUT + 0.2)
        sock.sendall(CHAT[10:])
        first = read_answer(sock, 10, until_close=False)
        assert first.status == 200 and first.ended == "open", first.raw[:300]
        sock.sendall(head("/v1/models", method="GET"))
        second = read_answer(sock, 10, until_close=False)
        assert second.status == 200 and b'"object":"list"' in second.body.replace(b" ", b"")


# ---- without keys: loopback names only -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "rebind.127.0.0.1.nip.io"])
def test_a_dns_rebinding_host_is_refused(port: int, host: str) -> None:
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/json",
                          f"Content-Length: {len(CHAT)}", "Connection: close").replace(b"127.0.0.1", host.encode())
                     + CHAT)
        answer = read_answer(sock, 5)
    answer.error(403, "host_not_allowed")


def test_a_form_post_from_a_page_is_refused(port: int) -> None:
    form = b"model=gpt-4o-mini&messages=hi"
    with connect(port) as sock:
        sock.sendall(head("/v1/chat/completions", "Content-Type: application/x-www-form-urlencoded",
                          f"Content-Length: {len(form)}", "Connection: close") + form)
        answer = read_answer(sock, 5)
    assert "Content-Type: application/json" in str(answer.error(415, "unsupported_media_type")["message"])

