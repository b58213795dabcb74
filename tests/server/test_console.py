"""`cfai serve`'s console line per request (server.console): what it shows, what it never shows, and that a
terminal that does not read never holds a request up (lines are dropped and counted instead)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cfai_cli.core.redact import Scrubber
from cfai_cli.server.app import create_app
from cfai_cli.server.console import ConsoleLog, Entry, format_line
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore
from tests.sdk import openai, sdk_httpx

pytestmark = pytest.mark.anyio


def _read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def entry(**changes: object) -> Entry:
    base = Entry(ts=time.mktime((2026, 1, 2, 14, 2, 7, 0, 0, -1)), method="POST", path="/v1/chat/completions",
                 status=200, seconds=0.4123, model="@cf/meta/llama-3.1-8b-instruct-fast", key="ci",
                 prompt_tokens=12, completion_tokens=30, neurons=0.6125, estimated=True)
    return base._replace(**changes)  # type: ignore[arg-type]


def test_the_line_has_each_part_and_leaves_out_what_the_request_had_not() -> None:
    assert format_line(entry()) == ("14:02:07 POST /v1/chat/completions 200 412 ms "
                                    "@cf/meta/llama-3.1-8b-instruct-fast key=ci 12+30 tok ~0.6125 neurons")
    assert format_line(entry(estimated=False, neurons=1234.5)).endswith(" 1234 neurons")  # four figures
    bare = entry(method="GET", path="/v1/models", status=401, seconds=0.0009, model=None, key=None,
                 prompt_tokens=0, completion_tokens=0, neurons=None)
    assert format_line(bare) == "14:02:07 GET /v1/models 401 1 ms"


def test_the_status_is_coloured_by_its_class_only_when_asked() -> None:
    assert " \x1b[32m200\x1b[0m " in format_line(entry(), colour=True)
    assert " \x1b[33m429\x1b[0m " in format_line(entry(status=429), colour=True)
    assert " \x1b[31m502\x1b[0m " in format_line(entry(status=502), colour=True)
    assert "\x1b" not in format_line(entry(status=502))


def test_client_text_cannot_write_escapes_or_secrets_to_the_terminal() -> None:
    scrubber = Scrubber(["cf-secret-token-value"])
    line = format_line(entry(path="/v1/models/\x1b]0;owned\x07sk-proj-AbCdEf0123456789_-xyz/cf-secret-token-value",
                             model="\x1b[2Jm", key="ops\x1b[31m"), scrubber=scrubber)
    assert "\x1b" not in line and "\x07" not in line
    assert "AbCdEf0123456789" not in line and "sk-proj-…" in line
    assert "cf-secret-token-value" not in line and "***" in line
    # A secret where the path is cut short is masked whole first, not half shown.
    for cut in range(100, 125):
        line = format_line(entry(path="/" + "p" * cut + "cf-secret-token-value"), scrubber=scrubber)
        assert not any(part in line for part in ("cf-secret", "token-value", "secret-tok"))


def test_a_terminal_that_does_not_read_drops_lines_and_says_how_many() -> None:
    read, write = os.pipe()
    os.set_blocking(write, True)
    log = ConsoleLog(write, capacity=8)
    log.start()
    try:
        # The pipe (64 KiB) fills and the writer thread blocks in os.write; add() must go on returning at once.
        long_path = "/v1/" + "x" * 100
        for _ in range(2000):
            log.add(entry(path=long_path))
        assert log.dropped > 0
        before = log.dropped
        seen = ""
        deadline = time.monotonic() + 10
        while "request lines dropped" not in seen and time.monotonic() < deadline:
            os.set_blocking(read, False)
            try:
                seen += os.read(read, 1 << 20).decode(errors="replace")
            except BlockingIOError:
                time.sleep(0.01)
            log.add(entry())  # the next line after the terminal caught up carries the count
        assert "request lines dropped: the terminal was too slow" in seen
        reported = sum(int(line.split("(", 1)[1].split()[0]) for line in seen.splitlines()
                       if "request lines dropped" in line)
        assert reported >= before
    finally:
        log.stop()
        os.close(read)
        os.close(write)


async def test_each_request_through_the_sdk_is_one_line_with_key_name_tokens_and_neurons(settings: Settings) -> None:
    key, record = KeyStore(settings.database).create("ci-bot")
    app = create_app(settings.as_offline(), console="colour")
    read, write = os.pipe()
    app.state.console.fd = write
    try:
        async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
                transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1") as http:
            client = openai.AsyncOpenAI(api_key=key, base_url="http://proxy.test/v1", http_client=http, max_retries=0)
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
            answer = raw.parse()
            neurons = float(raw.headers["x-cfai-neurons"])
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve(f"{settings.api_token}")
            wrong = openai.AsyncOpenAI(api_key="sk-proj-not-a-real-key-123456", base_url="http://proxy.test/v1",
                                       http_client=http, max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
        text = _read_all(read)
    finally:
        os.close(read)
        os.close(write)
    lines = text.splitlines()
    assert len(lines) == 3, text
    chat, missing, refused = lines
    assert answer.usage is not None
    assert " POST /v1/chat/completions \x1b[32m200\x1b[0m " in chat
    assert f" {answer.model} key=ci-bot {answer.usage.prompt_tokens}+{answer.usage.completion_tokens} tok " in chat
    assert chat.endswith(f" {neurons:.4g} neurons") or chat.endswith(f" ~{neurons:.4g} neurons")
    assert "GET /v1/models/*** \x1b[33m404" in missing and "key=ci-bot" in missing
    assert "GET /v1/models \x1b[33m401" in refused and "key=" not in refused
    for secret in (key, record.id, settings.api_token, "sk-proj-not-a-real-key"):
        assert secret not in text


async def test_no_console_by_default(settings: Settings, tmp_path: Path) -> None:
    assert create_app(settings.as_offline()).state.console is None
