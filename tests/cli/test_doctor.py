"""`cfai doctor` through the CLI: each check with its fix, --json, and its exit status; the token checks
against a stand-in Cloudflare API (an httpx MockTransport in place of the network) with good and bad tokens."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.store.migrations import LATEST
from cfai_cli.store.sql import forget
from tests.cli.conftest import Invoke
from tests.fake_workers import CATALOGUE, envelope, error_envelope
from tests.infra.servers import PostgresServer, RedisServer, S3Server

ACCOUNT = "0123456789abcdef0123456789abcdef"
GOOD, NO_AI, DISABLED = "cf-good-token-0000", "cf-dns-only-token-0000", "cf-disabled-token-0000"


class StandIn:
    """Cloudflare's token verify and the Workers AI catalogue, answering as Cloudflare does per token."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.url.path == "/client/v4/user/tokens/verify":
            if token == DISABLED:
                return httpx.Response(200, json=envelope({"id": "t", "status": "disabled"}))
            if token in (GOOD, NO_AI):
                return httpx.Response(200, json=envelope({"id": "t", "status": "active"}))
            return httpx.Response(401, json=error_envelope(1000, "Invalid API Token"))
        if request.url.path == f"/client/v4/accounts/{ACCOUNT}/ai/models/search":
            assert request.url.params["per_page"] == "1"  # a cheap call, not the whole catalogue
            if token == GOOD:
                return httpx.Response(200, json=envelope(CATALOGUE[:1]))
            if token == NO_AI:
                return httpx.Response(403, json=error_envelope(10000, "Authentication error"))
            return httpx.Response(401, json=error_envelope(10000, "Authentication error"))
        return httpx.Response(404, json=error_envelope(7003, "No route for the URI"))


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """The network of the Workers AI client replaced by the stand-in (the rest of cfai runs as it is)."""
    server = StandIn()
    transport = httpx.MockTransport(server)
    monkeypatch.setattr("cfai_cli.upstream.network.choose_transport", lambda given, **_: transport)
    return server


def doctor(cli: Invoke, *args: str, token: str | None = None,
           env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    env = {**({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": token} if token else {}), **(env or {})}
    result = cli(*args, "doctor", "--json", env=env)
    report = json.loads(result.stdout)
    assert report["exit_status"] == result.exit_code and report["ok"] == (result.exit_code == 0)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


def test_a_good_token_passes_every_check(cli: Invoke, stand_in: StandIn) -> None:
    status, checks = doctor(cli, token=GOOD)
    assert status == 0, checks
    assert [c["status"] for c in checks.values()] == ["ok"] * 6
    assert stand_in.paths == ["/client/v4/user/tokens/verify", f"/client/v4/accounts/{ACCOUNT}/ai/models/search"]
    assert "environment ($CLOUDFLARE_API_TOKEN)" in checks["credentials"]["detail"]


@pytest.mark.parametrize(("token", "failing", "words"), [
    ("cf-made-up-token-0000", {"token", "workers ai"}, "Cloudflare rejected the token"),
    (NO_AI, {"workers ai"}, "may not use Workers AI"),
    (DISABLED, {"token", "workers ai"}, "the token is disabled"),
])
def test_a_bad_token_fails_with_a_fix(cli: Invoke, stand_in: StandIn, token: str, failing: set[str],
                                      words: str) -> None:
    status, checks = doctor(cli, token=token)
    assert status == 3
    assert {name for name, c in checks.items() if c["status"] == "fail"} == failing
    assert any(words in checks[name]["detail"] for name in failing)
    assert all("Workers AI" in checks[name]["fix"] for name in failing)  # what permission to give the token
    assert token not in json.dumps(checks)


def test_unreachable_cloudflare_is_exit_5(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr("cfai_cli.upstream.network.choose_transport",
                        lambda given, **_: httpx.MockTransport(refuse))
    status, checks = doctor(cli, token=GOOD)
    assert status == 5
    assert "could not ask" in checks["token"]["detail"] and "network" in checks["token"]["fix"]


def test_offline_asks_the_emulator(cli: Invoke) -> None:
    for args, env in ((("--offline",), {}), ((), {"CFAI_OFFLINE": "1"})):
        result = cli(*args, "doctor", env=env)
        assert result.exit_code == 0, result.output
        assert "ok    token        the offline emulator says the token is active" in result.stdout


def test_no_credentials_say_how_to_set_them(cli: Invoke) -> None:
    result = cli("doctor")
    assert result.exit_code == 3
    assert "fail  credentials  CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN not set" in result.stdout
    assert "fix: `cfai config set account_id ID`" in result.stdout
    assert "skip  token" in result.stdout


def test_a_misspelt_config_file_fails_the_config_check(cli: Invoke, cfai_home: Path) -> None:
    (cfai_home / "config.toml").write_text("# mine\ntimout = 30\n")
    status, checks = doctor(cli, "--offline")
    assert status == 3
    assert checks["config"]["status"] == "fail"
    assert ":2: timout: unknown field; did you mean timeout?" in checks["config"]["detail"]
    assert checks["key store"]["status"] == "ok"  # the other local checks still run


def test_files_readable_by_others_are_named_with_the_chmod(cli: Invoke, cfai_home: Path) -> None:
    assert cli("config", "set", "timeout", "30").exit_code == 0
    assert doctor(cli, "--offline")[0] == 0
    (cfai_home / "config.toml").chmod(0o644)
    status, checks = doctor(cli, "--offline")
    assert status == 3
    assert checks["permissions"]["fix"] == f"chmod 600 {cfai_home / 'config.toml'}"
    cfai_home.chmod(0o755)
    assert doctor(cli, "--offline")[1]["permissions"]["fix"].startswith(f"chmod 700 {cfai_home} && chmod 600")


def test_an_old_key_store_is_reported(cli: Invoke, cfai_home: Path) -> None:
    assert cli("keygen", "--name", "laptop").exit_code == 0
    assert doctor(cli, "--offline")[1]["key store"]["detail"].endswith("opens, schema current")
    old = cfai_home / "cfai.db"
    old.unlink()
    with sqlite3.connect(old) as conn:  # the table as the first cfai made it
        conn.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
                     " hint TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER)")
    old.chmod(0o600)
    status, checks = doctor(cli, "--offline")
    assert status == 3
    detail = checks["key store"]["detail"]
    assert "the api_keys table lacks " in detail and {"cache", "expires_at", "scopes"} <= set(
        detail.split(" lacks ")[1].split(" (")[0].split(", "))
    assert "cfai keys list" in checks["key store"]["fix"]


def test_a_postgresql_store_is_checked_there(cli: Invoke, postgres_server: PostgresServer) -> None:
    down = doctor(cli, "--offline", env={"CFAI_STORE_URL": "postgresql://cfai:pw-not-shown@127.0.0.1:1/gw"})[1]
    assert down["key store"]["status"] == "fail"
    assert down["key store"]["detail"].startswith("cannot reach the database at 127.0.0.1:1/gw: ")
    assert "pw-not-shown" not in json.dumps(down)
    url = postgres_server.create_database(f"doctor_{os.getpid()}")
    try:
        fresh = doctor(cli, "--offline", env={"CFAI_STORE_URL": url})[1]["key store"]
        assert fresh["status"] == "ok" and fresh["detail"].endswith(f"schema 0, {LATEST} migration(s) to apply "
                                                                      "(`cfai db migrate`)")
        assert cli("db", "migrate", env={"CFAI_STORE_URL": url}).exit_code == 0
        assert doctor(cli, "--offline", env={"CFAI_STORE_URL": url})[1]["key store"]["detail"].endswith(
            f"schema {LATEST}")
    finally:
        forget(url)


def test_a_shared_gateways_redis_and_bucket_are_checked(cli: Invoke, redis_server: RedisServer,
                                                       s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket(f"doctor-{os.getpid()}")
    aws = {"AWS_ACCESS_KEY_ID": s3_server.access_key_id, "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
           "AWS_REGION": s3_server.region, "AWS_ENDPOINT_URL": s3_server.url}
    status, up = doctor(cli, "--offline", env={"CFAI_COORDINATION_URL": redis_server.url,
                                               "CFAI_BLOBS_URL": f"s3://{bucket}/gw", **aws})
    assert up["coordination"] == {"name": "coordination", "status": "ok", "fix": None,
                                  "detail": f"Redis at 127.0.0.1:{redis_server.port} answers"}
    assert up["blobs"]["status"] == "ok" and status == 0, up
    status, down = doctor(cli, "--offline", env={"CFAI_COORDINATION_URL": "redis://:pw-not-shown@127.0.0.1:1/0",
                                                 "CFAI_BLOBS_URL": "s3://no-such-bucket-here/gw", **aws})
    assert down["coordination"]["status"] == "fail" and down["blobs"]["status"] == "fail", down
    assert down["coordination"]["detail"].startswith("cannot reach Redis at 127.0.0.1:1: ")
    assert status == 5 and "pw-not-shown" not in json.dumps(down)
