"""The response cache's pure rules: what a request may do, when it is cached, its key, and rebuilt streams."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.cache import CacheConfig, Plan, cache_key, combine, deterministic_temperature, plan, request_mode
from cfai_cli.core.translate.chat_assemble import assemble_completion
from cfai_cli.core.translate.chat_stream import completion_to_chunks
from cfai_cli.errors import InvalidRequest

ON = CacheConfig(enabled=True)


@pytest.mark.parametrize(("config", "route", "header", "opted_in", "mode"), [
    (CacheConfig(), "chat/completions", "use", True, None),  # off: nothing, whatever is asked
    (ON, "images/generations", "use", True, None),  # a route the cache does not serve
    (CacheConfig(enabled=True, routes=frozenset({"embeddings"})), "chat/completions", None, True, None),
    (ON, "chat/completions", None, False, "skip"),
    (ON, "chat/completions", None, True, "auto"),
    (CacheConfig(enabled=True, by_default=True), "responses", None, False, "auto"),
    (ON, "messages", " USE ", False, "use"),
    (ON, "completions", "refresh", False, "refresh"),
    (ON, "embeddings", "skip", True, "skip"),
])
def test_request_mode(config: CacheConfig, route: str, header: str | None, opted_in: bool, mode: str | None) -> None:
    assert request_mode(config, route=route, header=header, key_opted_in=opted_in) == mode


def test_an_unknown_header_value_is_a_400_naming_the_header() -> None:
    with pytest.raises(InvalidRequest) as refused:
        request_mode(ON, route="chat/completions", header="yes please", key_opted_in=True)
    assert refused.value.param == "x-cfai-cache" and refused.value.status == 400


@pytest.mark.parametrize(("mode", "zero_only", "deterministic", "expected", "status"), [
    ("skip", True, True, Plan(False, False), "bypass"),
    ("auto", True, False, Plan(False, False), "bypass"),
    ("auto", True, True, Plan(True, True), "miss"),
    ("auto", False, False, Plan(True, True), "miss"),
    ("use", True, False, Plan(True, True), "miss"),
    ("refresh", True, False, Plan(False, True), "refresh"),
])
def test_plan(mode: Any, zero_only: bool, deterministic: bool, expected: Plan, status: str) -> None:
    decided = plan(mode, CacheConfig(enabled=True, temperature_zero_only=zero_only), deterministic=deterministic)
    assert decided == expected and decided.status == status


def test_only_an_explicit_zero_temperature_is_deterministic() -> None:
    assert deterministic_temperature(0) and deterministic_temperature(0.0)
    assert not deterministic_temperature(None) and not deterministic_temperature(0.2)


BASE = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def key(**changes: Any) -> str:
    tenant = changes.pop("tenant", "key_a")
    chain = changes.pop("chain", ["cloudflare:@cf/meta/llama-3.1-8b-instruct-fast"])
    return cache_key("chat", tenant=tenant, chain=chain, request={**BASE, **changes})


def test_the_key_changes_with_what_changes_the_answer_and_only_that() -> None:
    same = key()
    assert len(same) == 64 and same == key()
    assert key(stream=True, stream_options={"include_usage": True}, metadata={"x": 1}, store=True) == same
    assert key(top_p=None) == same  # null and unset are one
    assert key(messages=list(reversed(BASE["messages"]))) == same  # (one message)
    for different in (key(tenant="key_b"), key(tenant=""), key(chain=["cloudflare:@cf/qwen/qwq-32b"]),
                      key(chain=["cloudflare:@cf/meta/llama-3.1-8b-instruct-fast", "backup:@cf/x/y"]),
                      key(temperature=0.5), key(user="u1"), key(max_tokens=5), key(model="fast"),
                      key(messages=[{"role": "user", "content": "hi "}]), key(tools=[])):
        assert different != same
    assert cache_key("embeddings", tenant="key_a", chain=[], request=BASE) != cache_key(
        "chat", tenant="key_a", chain=[], request=BASE)


def test_combine_is_a_hit_only_when_every_lookup_hit() -> None:
    assert combine(None, "hit") == "hit" and combine("hit", "hit") == "hit"
    assert combine("hit", "miss") == "miss" and combine("miss", "hit") == "miss"
    assert combine("refresh", "hit") == "refresh" and combine("hit", "bypass") == "bypass"


COMPLETION: Any = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
    "choices": [
        {"index": 0, "logprobs": None, "finish_reason": "tool_calls",
         "message": {"role": "assistant", "content": "Let me look.", "refusal": None, "reasoning_content": "Think.",
                     "tool_calls": [{"id": "call_1", "type": "function",
                                     "function": {"name": "get", "arguments": "{\"a\": 1}"}},
                                    {"id": "call_2", "type": "custom", "custom": {"name": "sh", "input": "ls"}}]}},
        {"index": 1, "logprobs": None, "finish_reason": "stop",
         "message": {"role": "assistant", "content": "Plain.", "refusal": None}},
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def test_a_replayed_completion_assembles_back_to_itself() -> None:
    assert assemble_completion(completion_to_chunks(COMPLETION, include_usage=True)) == COMPLETION


def test_fragments_are_joined() -> None:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas = [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"},
              {"tool_calls": [{"index": 0, "id": "t1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]}]
    chunks: list[Any] = [{**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]}
                         for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}]})
    chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
    done = assemble_completion(chunks)
    assert done is not None
    message = done["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert message.get("tool_calls") == [{"id": "t1", "type": "function",
                                          "function": {"name": "f", "arguments": "{\"x\": 2}"}}]
    assert assemble_completion(chunks[:-1]) is None  # no usage: not something to store
    assert assemble_completion(chunks[:-2] + chunks[-1:]) is None  # no finish reason: cut short
    assert assemble_completion([]) is None


def test_the_cache_table_of_config_toml(tmp_path: Any) -> None:
    from cfai_cli.errors import ConfigError
    from cfai_cli.settings import load_settings, public_view

    home = {"CFAI_HOME": str(tmp_path)}
    assert load_settings(environ=home).cache == CacheConfig()  # off
    (tmp_path / "config.toml").write_text('[cache]\nenabled = true\nttl_seconds = 600\nmax_entries = 50\n'
                                          'routes = ["embeddings", "chat/completions"]\nby_default = true\n')
    cache = load_settings(environ=home).cache
    assert cache == CacheConfig(enabled=True, ttl=600, max_entries=50, by_default=True,
                                routes=frozenset({"embeddings", "chat/completions"}))
    assert public_view(load_settings(environ=home))["cache"]["routes"] == ["chat/completions", "embeddings"]
    for text, line in (("[cache]\nttl_secnds = 5", "[cache] ttl_secnds: unknown field; did you mean ttl_seconds?"),
                       ('[cache]\nroutes = ["images"]', "[cache] routes: unknown route 'images'; the cache serves "
                                                        "chat/completions, completions, responses, messages, "
                                                        "embeddings."),
                       ("[cache]\nttl_seconds = 0", "[cache] ttl_seconds: must be more than 0 seconds."),
                       ("[cache]\nmax_entries = 0", None)):
        (tmp_path / "config.toml").write_text(text + "\n")
        with pytest.raises(ConfigError) as info:
            load_settings(environ=home)
        if line is not None:
            assert info.value.message.startswith(f"{tmp_path / 'config.toml'}:2: {line} ("), info.value.message


def test_the_docs_example_is_the_defaults_switched_on() -> None:
    """docs/cache.md's [cache] example parses, and each value it shows is the default it claims to be."""
    import tomllib
    from pathlib import Path

    from cfai_cli.core.config_file import parse_tables

    text = (Path(__file__).parents[2] / "docs" / "cache.md").read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    tables, _ = parse_tables(tomllib.loads(example), source="docs/cache.md")
    assert tables.cache.runtime() == CacheConfig(enabled=True)
