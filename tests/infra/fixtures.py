"""Session fixtures: one real PostgreSQL, Redis and S3-compatible server per test run, started on first use.

Registered for every test by tests/conftest.py (`pytest_plugins`). A server whose binary or package is absent
skips its tests with the reason, except under CI (the CI variable set), where .ci/run installs them and a
missing one is a failure, so they cannot silently stop running there. Each is stopped, and its temp dir
removed, when the session ends, however its tests ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.infra.servers import (
    Missing,
    PostgresServer,
    RedisServer,
    S3Server,
    start_postgres,
    start_redis,
    start_s3,
)

Server = TypeVar("Server", PostgresServer, RedisServer, S3Server)


def _serve(start: Callable[[], Server]) -> Iterator[Server]:
    try:
        server = start()
    except Missing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (.ci/run installs it, so CI must run these tests)")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server with the empty database `cfai_test`; `.url` is its postgresql:// URL."""
    yield from _serve(start_postgres)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server with nothing saved to disk; `.url` is its redis:// URL."""
    yield from _serve(start_redis)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server; `.url` is the endpoint, `.region` and the credentials go with it."""
    yield from _serve(start_s3)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop (or restart) mid-test: the session's stays up for the others."""
    yield from _serve(start_redis)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test module's own, to stop mid-test (the session's stays up for the others)."""
    yield from _serve(start_postgres)
