"""What the replica tests share: minting keys over the admin API, bursts split across both replicas, and reading
`cfai usage --json` from a third host's view."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai

from tests.replicas.conftest import Gateway, Replica, cli

MODEL = "@cf/meta/llama-3.1-8b-instruct"
HI = [{"role": "user", "content": "hi"}]
IMAGE_MODEL = "@cf/black-forest-labs/flux-1-schnell"


def mint(replica: Replica, admin: str, **policy: Any) -> tuple[str, str]:
    """A key made through `replica`'s admin API: (secret, id)."""
    answer = httpx.post(f"{replica.url}/v1/admin/keys", headers={"Authorization": f"Bearer {admin}"},
                        json={"name": "replicas", **policy}, timeout=30)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return str(body["key"]), str(body["id"])


def chat_status(replica: Replica, key: str, model: str = MODEL) -> tuple[int, str]:
    """(HTTP status, error code or answer text) of one chat completion through the SDK."""
    try:
        answer = replica.sdk(key).chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        return error.status_code, str(body.get("code") or body.get("type") or body)
    return 200, str(answer.choices[0].message.content)


def burst(gateway: Gateway, key: str, count: int = 40) -> list[tuple[int, str]]:
    """`count` chat requests at once, alternating replicas A and B."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda i: chat_status(gateway.both[i % 2], key), range(count)))


def usage_group(gateway: Gateway, key_id: str, requests: int, *, seconds: float = 15) -> dict[str, Any]:
    """The key's group in `cfai usage --by key --json` run on a third host, once `requests` rows are there
    (each replica writes its usage rows about once a second)."""
    deadline = time.monotonic() + seconds
    while True:
        result = cli(gateway.env, "usage", "--by", "key", "--since", "1h", "--json")
        assert result.returncode == 0, result.stderr
        groups = {g["group"]: g for g in json.loads(result.stdout)["groups"]}
        group: dict[str, Any] = groups.get(key_id, {"requests": 0})
        if group["requests"] >= requests or time.monotonic() > deadline:
            assert group["requests"] == requests, group
            return group
        time.sleep(0.3)
