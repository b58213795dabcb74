"""Outages, as docs/shared-gateway.md ("Failure behaviour") documents them: a Redis that stops closes both
replicas (503 coordination_unavailable, the default `on_failure = "closed"`) until it is back; a stream in flight
outlives a Redis restart; a bucket that stops fails URL images with 503 (base64 ones are
unaffected); a PostgreSQL unreachable at start stops `cfai serve` with one line. These replicas
have a Redis and a bucket server of their own (the session's are never stopped), restarted on the same port."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.infra.servers import Missing, PostgresServer, RedisServer, S3Server, start_redis, start_s3
from tests.openai_schema import validate
from tests.replicas.conftest import Gateway, Replica, cli, running_gateway
from tests.replicas.helpers import HI, IMAGE_MODEL, MODEL, chat_status, mint, usage_group
from tests.replicas.standin import SLOW_EVENTS
from tests.servers import free_port

BUCKET = "cfai-replicas-faults"


@dataclass
class Fragile:
    gateway: Gateway
    redis: RedisServer
    s3: S3Server

    def stop_redis(self) -> None:
        self.redis.process.stop()

    def start_redis(self) -> None:
        self.redis = start_redis(self.redis.port)

    def stop_s3(self) -> None:
        self.s3.process.stop()

    def start_s3(self) -> None:
        self.s3 = start_s3(self.s3.port)
        self.s3.create_bucket(BUCKET)


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Fragile]:
    servers: list[RedisServer | S3Server] = []
    try:
        servers += [start_redis(), start_s3()]
    except Missing as exc:
        for server in servers:
            server.process.stop()
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    redis, s3 = servers
    assert isinstance(redis, RedisServer) and isinstance(s3, S3Server)
    fragile = Fragile(None, redis, s3)  # type: ignore[arg-type]  # the gateway comes next
    try:
        with running_gateway(tmp_path_factory, postgres_server.create_database("replicas_faults"), redis.url,
                             s3, s3.create_bucket(BUCKET)) as gateway:
            fragile.gateway = gateway
            yield fragile
    finally:
        fragile.redis.process.stop()
        fragile.s3.process.stop()


def post_image(replica: Replica, key: str) -> httpx.Response:
    return httpx.post(f"{replica.url}/v1/images/generations", headers={"Authorization": f"Bearer {key}"},
                      json={"model": IMAGE_MODEL, "prompt": "a lighthouse", "response_format": "url"}, timeout=30)


def post_chat(replica: Replica, key: str) -> httpx.Response:
    return httpx.post(f"{replica.url}/v1/chat/completions", json={"model": MODEL, "messages": HI},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_redis_stopped_closes_both_replicas_until_it_is_back(fragile: Fragile) -> None:
    gateway = fragile.gateway
    key, _ = mint(gateway.a, gateway.admin, scopes=["chat"], rpm=1000)
    assert chat_status(gateway.a, key)[0] == 200 and chat_status(gateway.b, key)[0] == 200
    fragile.stop_redis()
    try:
        for replica in gateway.both:
            answer = post_chat(replica, key)
            assert answer.status_code == 503, answer.text
            body = answer.json()
            validate(body, "ErrorResponse")
            assert body["error"]["code"] == "coordination_unavailable"
            assert f"127.0.0.1:{fragile.redis.port}" in body["error"]["message"]
    finally:
        fragile.start_redis()
    for replica in gateway.both:  # the clients reconnect by themselves
        assert post_chat(replica, key).status_code == 200


def test_a_stream_in_flight_outlives_a_redis_restart(fragile: Fragile) -> None:
    gateway = fragile.gateway
    key, key_id = mint(gateway.b, gateway.admin, scopes=["chat"], rpm=1000, budget_neurons_per_day=1e9)
    chunks: list[str] = []
    request = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "slow"}]}
    with httpx.stream("POST", f"{gateway.a.url}/v1/chat/completions", json=request,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if not line.startswith("data: "):
                continue
            if not chunks:  # the stream is running: Redis goes away and comes back under it
                fragile.stop_redis()
                fragile.start_redis()
            chunks.append(line[len("data: "):])
    assert chunks[-1] == "[DONE]"
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks[:-1]
                   for choice in json.loads(chunk)["choices"])
    assert text == "w " * SLOW_EVENTS
    assert chat_status(gateway.b, key) == (200, "ok")
    group = usage_group(gateway, key_id, requests=2)  # nothing lost: the stream's row is there too
    assert group["errors"] == 0 and group["neurons"] > 0


def test_postgresql_unreachable_at_start_stops_serve_with_one_line(tmp_path_factory: pytest.TempPathFactory) -> None:
    closed = free_port()
    home = tmp_path_factory.mktemp("unreachable")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CFAI_", "CLOUDFLARE_", "AWS_"))}
    env.update(CFAI_HOME=str(home), CLOUDFLARE_ACCOUNT_ID="acct", CLOUDFLARE_API_TOKEN="token",
               CFAI_STORE_URL=f"postgresql://cfai:pg-s3cret@127.0.0.1:{closed}/cfai",
               CFAI_COORDINATION_URL=f"redis://:redis-s3cret@127.0.0.1:{free_port()}/0")
    result = cli(env, "serve", "--port", str(free_port()), "--no-ui", timeout=60)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cfai: cannot reach the database at 127.0.0.1:{closed}")
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_the_bucket_away_fails_url_images_with_503_on_both_and_base64_ones_are_served(fragile: Fragile) -> None:
    gateway = fragile.gateway
    key, _ = mint(gateway.a, gateway.admin, scopes=["images"])
    made = post_image(gateway.a, key)
    assert made.status_code == 200, made.text
    name = made.json()["data"][0]["url"].rsplit("/", 1)[1]
    fragile.stop_s3()
    try:
        for replica in gateway.both:
            for answer in (post_image(replica, key), httpx.get(f"{replica.url}/v1/images/files/{name}", timeout=30)):
                assert answer.status_code == 503, answer.text
                body = answer.json()
                validate(body, "ErrorResponse")
                assert body["error"]["code"] == "blob_storage_unavailable"
                assert BUCKET in body["error"]["message"]
            inline = replica.sdk(key).images.generate(model=IMAGE_MODEL, prompt="a lighthouse",
                                                      response_format="b64_json")
            assert inline.data and inline.data[0].b64_json
    finally:
        fragile.start_s3()  # empty: the objects made before are gone with moto's memory
    made = post_image(gateway.b, key)
    assert made.status_code == 200, made.text
    fetched = httpx.get(made.json()["data"][0]["url"].replace(gateway.b.url, gateway.a.url), timeout=30)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
