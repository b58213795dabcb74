"""Fixtures for every test: a private CFAI_HOME and no credentials or cfai settings leaking in from the shell."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx._transports.default
import pytest
import typer.main
import typer.testing

_COMMANDS: dict[int, tuple[typer.Typer, object]] = {}


def _command_once(app: typer.Typer) -> object:
    """Typer's CliRunner builds the click command from the app on every invoke: it evaluates every command's
    annotations again (~30 commands, compile() and eval() each time), which was most of the CPU of the CLI
    tests. The real `cfai` builds it once per process; the tests now do the same (the command objects keep
    no state between invocations: each one gets its own click Context)."""
    built = _COMMANDS.get(id(app))
    if built is None or built[0] is not app:
        built = _COMMANDS[id(app)] = (app, typer.main.get_command(app))
    return built[1]


typer.testing._get_command = _command_once  # type: ignore[assignment]  # what CliRunner.invoke calls

_real_ssl_context = httpx._transports.default.create_ssl_context
_SSL_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}


def _ssl_context_once(verify: ssl.SSLContext | str | bool = True, cert: Any = None,
                      trust_env: bool = True) -> ssl.SSLContext:
    """Every httpx client (the tests' own, and each OpenAI/Anthropic SDK client) loads certifi's CA bundle
    into a new SSL context: ~20-60 ms a client, thousands of clients in the suite, all on plain-HTTP
    loopback or in-process transports. The default context is built once per set of CA variables and
    shared (an SSLContext may be shared); anything else (a given context or file, a client certificate,
    verify=False) is built as before."""
    if verify is not True or cert is not None:
        return _real_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _SSL_CONTEXTS.get(key)
    if context is None:
        context = _SSL_CONTEXTS[key] = _real_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    return context


httpx._transports.default.create_ssl_context = _ssl_context_once  # type: ignore[assignment]

# Real PostgreSQL, Redis and S3-compatible servers for any test that asks (tests/infra/fixtures.py).
pytest_plugins = ["tests.infra.fixtures", "tests.databases"]


@pytest.fixture(autouse=True)
def cfai_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CFAI_HOME at a fresh directory and clear CLOUDFLARE_* / CFAI_* (DESIGN.md habit 8)."""
    for name in list(os.environ):
        if name.startswith(("CLOUDFLARE_", "CFAI_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("cfai-home")
    monkeypatch.setenv("CFAI_HOME", str(home))
    return home


@pytest.fixture
def patient_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis's read timeout 5 s instead of store.redis_limits' 0.25 s, for the tests of exactness under a burst:
    forty admissions or holds at once on one event loop on a loaded CI host (coverage, two cores) outlasted 0.25 s
    once, and a replica then refuses everything (on_failure = closed), which is not what those tests are about. The
    tests of a slow or stopped Redis keep the real timeout."""
    from cfai_cli.store import redis_limits

    monkeypatch.setattr(redis_limits, "TIMEOUT", 5.0)
