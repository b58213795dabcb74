"""Every object one replica makes is visible from the other: hosted images, files, batches (and their output),
stored responses; a cooldown learned by one is honoured by the other; usage sees both."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path

import httpx

from tests.infra.servers import S3Server
from tests.replicas.conftest import BUCKET, Gateway
from tests.replicas.helpers import HI, IMAGE_MODEL, MODEL, chat_status, mint, usage_group
from tests.replicas.standin import OTHER_ACCOUNT, QUOTA_ACCOUNT, QUOTA_MODEL


def bucket_keys(s3_endpoint: str) -> str:
    """The bucket's listing (moto answers an unsigned ListObjectsV2)."""
    with urllib.request.urlopen(f"{s3_endpoint}/{BUCKET}?list-type=2&prefix=gateway/", timeout=10) as answer:
        return str(answer.read().decode())


def test_an_image_made_on_a_is_served_by_b(gateway: Gateway, s3_server: S3Server) -> None:
    key, _ = mint(gateway.a, gateway.admin, scopes=["images"])
    made = gateway.a.sdk(key).images.generate(model=IMAGE_MODEL, prompt="a lighthouse", response_format="url")
    assert made.data and made.data[0].url
    url = made.data[0].url
    assert url.startswith(gateway.a.url + "/v1/images/files/")
    name = url.rsplit("/", 1)[1]
    fetched = httpx.get(gateway.b.url + "/v1/images/files/" + name, timeout=30)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"] == "image/png" and fetched.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert httpx.get(url, timeout=30).content == fetched.content
    # The bytes are in the bucket, not in either replica's data directory.
    assert name.split(".")[0] in bucket_keys(s3_server.url)
    for replica in gateway.both:
        images = Path(replica.env["CFAI_HOME"]) / "images"
        assert not images.exists() or not any(images.iterdir())
    assert httpx.get(gateway.b.url + "/v1/images/files/" + "0" * 32 + ".png", timeout=30).status_code == 404


def batch_input(lines: int) -> bytes:
    return b"".join(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": MODEL, "messages": HI}}).encode() + b"\n" for i in range(lines))


def test_a_file_uploaded_on_a_is_read_on_b_and_its_batch_output_too(gateway: Gateway) -> None:
    key, _ = mint(gateway.a, gateway.admin, scopes=["all"])
    a, b = gateway.a.sdk(key), gateway.b.sdk(key)
    data = batch_input(3)
    uploaded = a.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert uploaded.id in [f.id for f in b.files.list()]
    assert b.files.retrieve(uploaded.id).bytes == len(data)
    assert b.files.content(uploaded.id).read() == data
    other, _ = mint(gateway.b, gateway.admin, scopes=["all"])  # files belong to their key, on every replica
    assert uploaded.id not in [f.id for f in gateway.b.sdk(other).files.list()]

    batch = a.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 30
    while (found := b.batches.retrieve(batch.id)).status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found.status == "completed", found
    assert found.request_counts is not None and found.request_counts.completed == 3
    assert found.output_file_id is not None
    output = [json.loads(line) for line in b.files.content(found.output_file_id).read().splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["line-0", "line-1", "line-2"]
    for line in output:
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["choices"][0]["message"]["content"] == "ok"
    assert a.files.content(found.output_file_id).read() == b.files.content(found.output_file_id).read()


def test_a_response_stored_on_a_is_retrieved_and_continued_on_b(gateway: Gateway) -> None:
    key, _ = mint(gateway.a, gateway.admin, scopes=["all"])
    first = gateway.a.sdk(key).responses.create(model=MODEL, input="remember the word lighthouse", store=True)
    assert first.output_text == "ok"
    again = gateway.b.sdk(key).responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == "ok"
    calls = len(gateway.standin.calls)
    follow = gateway.b.sdk(key).responses.create(model=MODEL, input="which word?", previous_response_id=first.id)
    assert follow.output_text == "ok" and follow.previous_response_id == first.id
    sent = json.dumps(gateway.standin.bodies[calls:])
    assert "remember the word lighthouse" in sent and "which word?" in sent  # B sent A's turn upstream
    gateway.a.sdk(key).responses.delete(first.id)
    assert httpx.get(f"{gateway.b.url}/v1/responses/{first.id}", headers={"Authorization": f"Bearer {key}"},
                     timeout=30).status_code == 404


def test_a_cooldown_learned_on_a_sends_b_straight_to_the_other_account(gateway: Gateway) -> None:
    key, key_id = mint(gateway.a, gateway.admin, scopes=["chat"])
    calls = len(gateway.standin.calls)
    assert chat_status(gateway.a, key, QUOTA_MODEL) == (200, "ok")
    assert gateway.standin.calls_since(calls) == [(QUOTA_ACCOUNT, QUOTA_MODEL), (OTHER_ACCOUNT, QUOTA_MODEL)]
    calls = len(gateway.standin.calls)
    assert chat_status(gateway.b, key, QUOTA_MODEL) == (200, "ok")
    assert chat_status(gateway.a, key, QUOTA_MODEL) == (200, "ok")
    assert gateway.standin.calls_since(calls) == [(OTHER_ACCOUNT, QUOTA_MODEL)] * 2
    # `cfai usage` on a third host sees the requests of both replicas.
    group = usage_group(gateway, key_id, requests=3)
    assert group["errors"] == 0


def test_an_answer_cached_by_a_is_served_by_b(gateway: Gateway) -> None:
    key, _ = mint(gateway.a, gateway.admin, scopes=["chat"], cache=True)
    calls = len(gateway.standin.calls)
    question = [{"role": "user", "content": "a question worth caching"}]
    first = gateway.a.sdk(key).chat.completions.with_raw_response.create(model=MODEL, messages=question,
                                                                            temperature=0)
    assert first.headers["x-cfai-cache"] == "miss"
    second = gateway.b.sdk(key).chat.completions.with_raw_response.create(model=MODEL, messages=question,
                                                                             temperature=0)
    assert second.headers["x-cfai-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == "ok"
    assert len(gateway.standin.calls_since(calls)) == 1
