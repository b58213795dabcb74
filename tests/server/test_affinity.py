"""Prefix-cache affinity through the proxy: the `x-session-affinity` header Workers AI sees (a fake transport
records it) for related and unrelated requests on every chat route, salted per key, the client's own header
winning; and the cached tokens the emulator's prefix cache reports, read back through the real SDKs.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore
from tests.fake_workers import FakeWorkers, native_text
from tests.openai_schema import validate, validate_sse_chat_stream
from tests.sdk import offline_raw, offline_sdk
from tests.server.anthropic_client import claude_on, raw_on
from tests.server.conftest import ClientFactory

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"  # a vLLM-served model: OpenAI chunks with running usage
SYSTEM = {"role": "system", "content": "You are a terse assistant for the accounts team."}


def sent_affinity(fake: FakeWorkers) -> list[str | None]:
    """The x-session-affinity of every /ai/run call so far, in order."""
    return [h.get("x-session-affinity") for h in fake.headers_seen if h.get("content-type") == "application/json"]


async def chat(client: httpx.AsyncClient, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    headers = extra.pop("headers", {})
    answer = await client.post("/v1/chat/completions", json={"model": LLAMA, "messages": messages, **extra},
                               headers=headers)
    assert answer.status_code == 200, answer.text
    return {} if extra.get("stream") else answer.json()  # type: ignore[no-any-return]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.fixture
def fake_llama(fake: FakeWorkers) -> FakeWorkers:
    fake.models[LLAMA] = native_text("Fine, thanks")
    return fake


async def test_one_conversation_shares_an_id_and_unrelated_ones_do_not(proxy: ClientFactory,
                                                                       fake_llama: FakeWorkers) -> None:
    first = [SYSTEM, user("Summarise the March invoices for Dana.")]
    later = [*first, {"role": "assistant", "content": "Done."}, user("And April?")]
    async with proxy() as client:
        await chat(client, first)
        await chat(client, later)
        await chat(client, later, stream=True)  # streamed turns carry it too
        await chat(client, [SYSTEM, user("Something else entirely.")])
        await chat(client, [user("Summarise the March invoices for Dana.")])  # no system prompt: another opening
    one, two, three, other, no_system = sent_affinity(fake_llama)
    assert one is not None and one.startswith("cfai-") and len(one) == len("cfai-") + 32
    assert one == two == three
    assert len({one, other, no_system}) == 3
    assert "Dana" not in one and "invoices" not in one  # a hash, never the text


async def test_same_user_and_same_prompt_cache_key(proxy: ClientFactory, fake_llama: FakeWorkers) -> None:
    async with proxy() as client:
        await chat(client, [user("First question")], user="alice")
        await chat(client, [user("A different question")], user="alice")
        await chat(client, [user("First question")], user="bob")
        await chat(client, [user("x")], user="alice", prompt_cache_key="ticket-42")
        await chat(client, [user("y")], user="bob", prompt_cache_key="ticket-42")  # the key outranks the user
        await chat(client, [user("x")], prompt_cache_key="alice")  # kinds are kept apart: not alice's id
    alice, alice_again, bob, key, key_again, key_alice = sent_affinity(fake_llama)
    assert alice == alice_again and alice != bob
    assert key == key_again and key not in (alice, bob)
    assert key_alice not in (alice, key)
    assert all(value is not None and "alice" not in value for value in (alice, key_alice))


async def test_tenants_never_share_an_id(proxy: ClientFactory, fake_llama: FakeWorkers, settings: Settings) -> None:
    other, _ = KeyStore(settings.database).create("other tenant")
    messages = [SYSTEM, user("Same words from two tenants")]
    async with proxy() as client:
        await chat(client, messages, user="alice")
        await chat(client, messages)
    async with proxy(key=other) as client:
        await chat(client, messages, user="alice")
        await chat(client, messages)
    mine_user, mine_prefix, theirs_user, theirs_prefix = sent_affinity(fake_llama)
    assert mine_user != theirs_user and mine_prefix != theirs_prefix


async def test_the_clients_own_header_wins_and_is_checked(proxy: ClientFactory, fake_llama: FakeWorkers) -> None:
    async with proxy() as client:
        await chat(client, [user("hi")], user="alice", prompt_cache_key="k",
                   headers={"x-session-affinity": "agent-run-7"})
        await chat(client, [user("hi")], stream=True, headers={"x-session-affinity": "agent-run-7"})
        too_long = await client.post("/v1/chat/completions", headers={"x-session-affinity": "x" * 257},
                                     json={"model": LLAMA, "messages": [user("hi")]})
    assert sent_affinity(fake_llama) == ["agent-run-7", "agent-run-7"]
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "x-session-affinity"


async def test_a_previous_response_id_chain_keeps_its_first_turns_id(proxy: ClientFactory,
                                                                     fake_llama: FakeWorkers) -> None:
    async with proxy() as client:
        async def respond(**body: Any) -> str:
            answer = await client.post("/v1/responses", json={"model": LLAMA, **body})
            assert answer.status_code == 200, answer.text
            return "" if body.get("stream") else str(answer.json()["id"])

        first = await respond(input="Plan the offsite.", instructions="Be brief.")
        second = await respond(input="Add a budget.", previous_response_id=first, instructions="Be very brief.")
        await respond(input="And a date.", previous_response_id=second, stream=True)
        await respond(input="Plan the offsite.", instructions="Be chatty.")  # unrelated: another opening
    one, two, three, unrelated = sent_affinity(fake_llama)
    # The instructions changed, so the opening did too: the chain, not the text, keeps turns 2 and 3 together.
    assert one is not None and one == two == three
    assert unrelated != one


async def test_anthropic_user_id_and_legacy_completions(settings: Settings, api_key: str, proxy: ClientFactory,
                                                        fake_llama: FakeWorkers) -> None:
    async with raw_on(settings, api_key, transport=fake_llama.transport()) as raw:
        for text in ("One conversation", "Another conversation"):
            answer = await raw.post("/v1/messages", json={
                "model": LLAMA, "max_tokens": 50, "metadata": {"user_id": "user-9"},
                "messages": [{"role": "user", "content": text}]})
            assert answer.status_code == 200, answer.text
    async with proxy() as client:
        for prompt in ("Once upon", "A time"):
            answer = await client.post("/v1/completions", json={"model": LLAMA, "prompt": prompt, "user": "user-9"})
            assert answer.status_code == 200, answer.text
    first, second, legacy, legacy_again = sent_affinity(fake_llama)
    assert first == second and legacy == legacy_again
    assert first is not None and legacy is not None


async def test_embeddings_carry_no_affinity(proxy: ClientFactory, fake: FakeWorkers) -> None:
    fake.models["@cf/baai/bge-base-en-v1.5"] = lambda request, body: httpx.Response(
        200, json={"result": {"shape": [1, 2], "data": [[0.1, 0.2]]}, "success": True, "errors": [], "messages": []})
    async with proxy() as client:
        answer = await client.post("/v1/embeddings", json={"model": "@cf/baai/bge-base-en-v1.5", "input": "hi"})
    assert answer.status_code == 200, answer.text
    assert sent_affinity(fake) == [None]


# ---- cached tokens, from the emulator's prefix cache, through the SDKs --------------------------------------


async def test_cached_tokens_through_the_openai_sdk(settings: Settings, api_key: str) -> None:
    first = [SYSTEM, user("Summarise the March invoices for Dana.")]
    async with offline_sdk(settings, api_key) as client:  # strict: the SDK's own types must accept the usage
        cold = await client.chat.completions.create(model=LLAMA, messages=first)  # type: ignore[arg-type]
        assert cold.choices[0].message.content
        later = [*first, {"role": "assistant", "content": cold.choices[0].message.content}, user("And April?")]
        warm = await client.chat.completions.create(model=LLAMA, messages=later)  # type: ignore[arg-type]
        unrelated = await client.chat.completions.create(model=LLAMA, messages=[user("Unrelated.")])
        streamed = await client.chat.completions.create(model=GLM, messages=first, stream=True,  # type: ignore[arg-type]
                                                        stream_options={"include_usage": True})
        async for _ in streamed:
            pass
        streamed = await client.chat.completions.create(model=GLM, messages=later, stream=True,  # type: ignore[arg-type]
                                                        stream_options={"include_usage": True})
        usage = [chunk.usage async for chunk in streamed if chunk.usage is not None][-1]
    assert cold.usage and warm.usage and unrelated.usage
    assert cold.usage.prompt_tokens_details and cold.usage.prompt_tokens_details.cached_tokens == 0
    assert warm.usage.prompt_tokens_details and warm.usage.prompt_tokens_details.cached_tokens
    assert 0 < warm.usage.prompt_tokens_details.cached_tokens < warm.usage.prompt_tokens
    assert unrelated.usage.prompt_tokens_details and unrelated.usage.prompt_tokens_details.cached_tokens == 0
    # Workers AI's trailing usage event leaves the count out: cfai keeps what the chunks before it gave.
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == (
        warm.usage.prompt_tokens_details.cached_tokens)


async def test_cached_tokens_validate_against_the_spec(settings: Settings, api_key: str) -> None:
    body = {"model": GLM, "messages": [SYSTEM, user("Same opening twice.")], "user": "u-1"}
    async with offline_raw(settings, api_key) as raw:
        await raw.post("/chat/completions", json=body)
        whole = await raw.post("/chat/completions", json=body)
        streamed = await raw.post("/chat/completions", json={**body, "stream": True,
                                                              "stream_options": {"include_usage": True}})
        legacy = await raw.post("/completions", json={"model": LLAMA, "prompt": "Tell me more.", "user": "u-1"})
        legacy = await raw.post("/completions", json={"model": LLAMA, "prompt": "Tell me more.", "user": "u-1"})
    validate(whole.json(), "CreateChatCompletionResponse")
    assert whole.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    chunks = validate_sse_chat_stream(streamed.content)
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    validate(legacy.json(), "CreateCompletionResponse")
    assert legacy.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


async def test_cached_tokens_in_responses_and_anthropic_usage(settings: Settings, api_key: str) -> None:
    async with offline_sdk(settings, api_key) as client:
        first = await client.responses.create(model=LLAMA, input="Plan the offsite.", instructions="Be brief.")
        # Instructions are not carried over a chain (as at OpenAI): the prompt begins the same only if resent.
        second = await client.responses.create(model=LLAMA, input="Add a budget.", previous_response_id=first.id,
                                               instructions="Be brief.")
    assert first.usage and first.usage.input_tokens_details.cached_tokens == 0
    assert second.usage and second.usage.input_tokens_details.cached_tokens > 0
    async with claude_on(settings.as_offline(), api_key) as claude:
        turns: list[Any] = [{"role": "user", "content": "Hello there, my name is Dana."}]
        cold = await claude.messages.create(model=LLAMA, max_tokens=100, messages=turns,
                                            metadata={"user_id": "dana"})
        turns += [{"role": "assistant", "content": cold.content[0].text},  # type: ignore[union-attr]
                  {"role": "user", "content": "What is my name?"}]
        warm = await claude.messages.create(model=LLAMA, max_tokens=100, messages=turns,
                                            metadata={"user_id": "dana"})
    assert cold.usage.cache_read_input_tokens == 0
    assert warm.usage.cache_read_input_tokens and warm.usage.cache_read_input_tokens > 0
