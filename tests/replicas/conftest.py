"""Two real `cfai serve` replicas as one gateway: each its own data directory (two hosts as far as they know), the
same PostgreSQL database, Redis database and S3 bucket (the session's real servers, tests/infra), and one
stand-in Workers AI over HTTP with two accounts (standin.py). Started once for the module that asks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openai import OpenAI

from tests.infra.servers import PostgresServer, RedisServer, S3Server
from tests.replicas.standin import OTHER_ACCOUNT, QUOTA_ACCOUNT, StandIn
from tests.servers import free_port, wait_for_health

REDIS_DB = 7  # the replicas' own Redis database: no other test's keys in it, none of theirs in others
BUCKET = "cfai-replicas"


def config_toml(s3_endpoint: str) -> str:
    """Each replica's config.toml: the bucket's plain-HTTP endpoint (only config.toml may allow plain HTTP), the
    response cache (for the keys that ask), the second Cloudflare account."""
    return f"""
[blobs]
endpoint = "{s3_endpoint}"

[cache]
enabled = true

[upstreams.backup]
type = "cloudflare"
account_id = "{OTHER_ACCOUNT}"
api_token_env = "BACKUP_TOKEN"
"""


def base_env(home: Path, standin: StandIn) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CFAI_", "CLOUDFLARE_", "AWS_"))}
    env.update(CFAI_HOME=str(home), CLOUDFLARE_ACCOUNT_ID=QUOTA_ACCOUNT, CLOUDFLARE_API_TOKEN="token-one",
               BACKUP_TOKEN="token-two", CFAI_API_BASE=standin.api_base, CFAI_TIMEOUT="10")
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real `cfai` in a subprocess with `env` (the replicas' settings)."""
    return subprocess.run([sys.executable, "-m", "cfai_cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """`cfai serve` started (not yet ready: see wait_for_health), and its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--port", str(port), "--no-ui"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, port


def stop_all(procs: list[subprocess.Popen[str]]) -> list[str]:
    """Stop every server at once (Ctrl-C to all, then wait for each); their stderr."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    errors = []
    for proc in procs:
        try:
            errors.append(proc.communicate(timeout=20)[1])
        except subprocess.TimeoutExpired:
            proc.kill()
            errors.append(proc.communicate()[1])
    return errors


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sdk(self, key: str, **options: object) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=30, **options)  # type: ignore[arg-type]


@dataclass
class Gateway:
    a: Replica
    b: Replica
    admin: str  # an admin key, minted with `cfai keygen` on the shared store
    standin: StandIn
    env: dict[str, str]  # the shared settings (a third host's view: `cfai usage`, `cfai keygen`)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def both(self) -> tuple[Replica, Replica]:
        return self.a, self.b


@contextmanager
def running_gateway(tmp_path_factory: pytest.TempPathFactory, store_url: str, redis_url: str,
                    s3_server: S3Server, bucket: str) -> Iterator[Gateway]:
    """A stand-in Workers AI, an admin key minted with `cfai keygen` on the shared store, and two replicas."""
    shared = {"CFAI_STORE_URL": store_url, "CFAI_COORDINATION_URL": redis_url,
              "CFAI_BLOBS_URL": f"s3://{bucket}/gateway", "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
              "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key, "AWS_REGION": s3_server.region}
    with StandIn().running() as standin:
        envs = []
        for name in ("a", "b", "cli"):
            home = tmp_path_factory.mktemp(f"replica-{name}")
            (home / "config.toml").write_text(config_toml(s3_server.url))
            envs.append({**base_env(home, standin), **shared})
        made = cli(envs[2], "keygen", "--name", "admin", "--scopes", "all")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.split()[0]
        procs: list[subprocess.Popen[str]] = []
        replicas = []
        try:
            for name, env in zip("ab", envs, strict=False):  # both start at once: two hosts booting together
                proc, port = start_serve(env)
                procs.append(proc)
                replicas.append(Replica(name, port, env))
            for proc, replica in zip(procs, replicas, strict=True):
                wait_for_health(proc, replica.port, seconds=60)
            yield Gateway(replicas[0], replicas[1], admin, standin, envs[2], procs)
        finally:
            errors = stop_all(procs)
        for err in errors:
            assert "Traceback" not in err, err


@pytest.fixture(scope="package")  # one gateway for the directory's modules: its start-up is most of their time
def gateway(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, redis_server: RedisServer,
            s3_server: S3Server) -> Iterator[Gateway]:
    """The session's servers: a fresh database, the replicas' own Redis database, a fresh bucket."""
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    with running_gateway(tmp_path_factory, postgres_server.create_database("replicas"), redis_url, s3_server,
                         s3_server.create_bucket(BUCKET)) as gateway:
        yield gateway
