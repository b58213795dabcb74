"""Model names: aliases, client-added prefixes, and ids that are safe to put into a URL path."""

from __future__ import annotations

import pytest

from cfai_cli.core.catalog import (
    DEFAULT_ALIASES,
    DEFAULT_CHAT_MODEL,
    DEFAULT_VISION_ALIASES,
    known_vision,
    resolve_model,
    speaks_chat_dialect,
    streams_upstream,
    validate_model_id,
)
from cfai_cli.errors import InvalidRequest, ModelNotFound

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
CUSTOM = {**DEFAULT_ALIASES, "fast": "@cf/meta/llama-3.1-8b-instruct-fast", "my.model:v2": "@hf/org/model-v2"}


@pytest.mark.parametrize(("name", "model_id"), [
    ("gpt-4o-mini", "@cf/meta/llama-3.1-8b-instruct-fast"),
    ("gpt-4o", SCOUT),
    ("gpt-4", LLAMA),
    ("gpt-5", "@cf/openai/gpt-oss-120b"),
    ("text-embedding-3-small", "@cf/baai/bge-base-en-v1.5"),
    ("whisper-1", "@cf/openai/whisper-large-v3-turbo"),
    ("  gpt-4o  ", SCOUT),
    ("fast", "@cf/meta/llama-3.1-8b-instruct-fast"),
    ("my.model:v2", "@hf/org/model-v2"),
    # ids given as is
    (LLAMA, LLAMA),
    ("@hf/nousresearch/hermes-2-pro-mistral-7b", "@hf/nousresearch/hermes-2-pro-mistral-7b"),
    ("@cf/moonshotai/kimi-k2.6", "@cf/moonshotai/kimi-k2.6"),
    ("@cf/org/sub/model_v1.5", "@cf/org/sub/model_v1.5"),
    # prefixes clients add
    ("openai/gpt-4o-mini", "@cf/meta/llama-3.1-8b-instruct-fast"),
    ("openai/fast", "@cf/meta/llama-3.1-8b-instruct-fast"),
    ("workers-ai/" + LLAMA, LLAMA),
    ("cloudflare/" + LLAMA, LLAMA),
    ("cf/" + LLAMA, LLAMA),
    ("openai/" + LLAMA, LLAMA),
])
def test_resolve_model(name: str, model_id: str) -> None:
    assert resolve_model(name, CUSTOM) == model_id


def test_aliases_are_data_not_code() -> None:
    assert resolve_model("gpt-4o", {"gpt-4o": "@cf/qwen/qwen3-30b-a3b-fp8"}) == "@cf/qwen/qwen3-30b-a3b-fp8"
    with pytest.raises(ModelNotFound):
        resolve_model("gpt-4o", {})


@pytest.mark.parametrize("model_id", [DEFAULT_CHAT_MODEL, *DEFAULT_ALIASES.values()])
def test_default_targets_are_valid_ids(model_id: str) -> None:
    assert validate_model_id(model_id) == model_id


BAD_IDS = [
    "@cf/meta/../secrets",
    "@cf/../../accounts/x",
    "@cf/meta/llama..3",
    "@cf/meta/llama?x=1",
    "@cf/meta/llama#frag",
    "@cf/meta/%2e%2e",
    "@cf/meta/%2E%2E/x",
    "@cf/meta/llama 3",
    "@cf/meta/llama\x00",
    "@cf/meta/lla\nma",
    "@cf/meta/llama\x7f",
    "@cf/meta/llama\u200b",
    "@cf/meta/llаma",  # Cyrillic a
    "@cf/meta/llama\\x",
    "@cf/a",
    "@cf/",
    "@cf//a",
    "@cf/a/",
    "@cf/meta//llama",
    "@cf/.hidden/x",
    "@cf/-x/y",
    "@xx/meta/llama",
    "@CF/meta/llama",
    "@",
]


@pytest.mark.parametrize("model_id", BAD_IDS)
def test_invalid_ids_are_rejected(model_id: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_model(model_id, CUSTOM)
    assert type(info.value) is InvalidRequest
    assert info.value.param == "model"
    assert info.value.status == 400


@pytest.mark.parametrize("model_id", [*BAD_IDS, "@cf/meta/llama\n", "@cf/meta/llama\t", " @cf/meta/llama"])
def test_validate_model_id_rejects(model_id: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_model_id(model_id, param="input.model")
    assert info.value.param == "input.model"


@pytest.mark.parametrize("name", ["workers-ai/@cf/meta/../x", "openai/@cf/a", "cf/@cf/meta/x?y"])
def test_invalid_ids_behind_a_prefix_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_model(name, CUSTOM)
    assert type(info.value) is InvalidRequest
    assert info.value.param == "model"


@pytest.mark.parametrize("name", ["gpt-9", "claude-2.1", "openai/gpt-9", "o5-mini"])
def test_unknown_alias_is_model_not_found(name: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model(name, CUSTOM)
    err = info.value
    assert err.param == "model"
    assert err.status == 404
    assert err.to_openai()["error"]["code"] == "model_not_found"
    assert name in err.message


@pytest.mark.parametrize("name", ["", "   ", "gpt 4o", "gpt-4o?x=1", "../../etc", "a/b/c"])
def test_malformed_names_are_invalid(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_model(name, CUSTOM)
    assert type(info.value) is InvalidRequest
    assert info.value.param == "model"


def test_alias_to_an_unsafe_id_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        resolve_model("evil", {"evil": "@cf/meta/../../accounts"})


def test_param_is_passed_through() -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("gpt-9", CUSTOM, param="input.model")
    assert info.value.param == "input.model"


@pytest.mark.parametrize(("model_id", "chat", "streams"), [
    ("@cf/zai-org/glm-4.7-flash", True, True),
    ("@cf/moonshotai/kimi-k2.6", True, True),
    ("@cf/google/gemma-4-26b-a4b-it", True, True),
    ("@cf/nvidia/nemotron-3-120b-a12b", True, True),
    ("@cf/openai/gpt-oss-120b", True, False),
    ("@cf/openai/gpt-oss-20b", True, False),
    (LLAMA, False, True),
    ("@cf/meta/llama-4-scout-17b-16e-instruct", False, True),
    ("@cf/qwen/qwen3-30b-a3b-fp8", False, True),  # native input, chat.completion output (reference §2.1)
    ("@cf/google/gemma-3-12b-it", False, True),
    ("@hf/nousresearch/hermes-2-pro-mistral-7b", False, True),
])
def test_model_families(model_id: str, chat: bool, streams: bool) -> None:
    assert speaks_chat_dialect(model_id) is chat
    assert streams_upstream(model_id) is streams


def test_unknown_alias_suggests_close_names() -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("gtp-4o-mini", DEFAULT_ALIASES)  # ("gpt-4o-mnii" is of the gpt-4o family)
    assert "Did you mean 'gpt-4o-mini'" in info.value.message
    with pytest.raises(ModelNotFound) as far:
        resolve_model("gemini-pro", DEFAULT_ALIASES)
    assert "Did you mean" not in far.value.message


# ---- Claude names (the Anthropic Messages API) ------------------------------------------------------


@pytest.mark.parametrize(("name", "family"), [
    ("claude-3-5-sonnet-20241022", "claude-sonnet"),
    ("claude-3-7-sonnet-latest", "claude-sonnet"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet"),
    ("claude-sonnet-4-6", "claude-sonnet"),  # Claude Code 2.x's default
    ("claude-opus-4-1", "claude-opus"),
    ("claude-opus-4-6", "claude-opus"),
    ("claude-3-opus-20240229", "claude-opus"),
    ("claude-haiku-4-5", "claude-haiku"),
    ("claude-3-5-haiku-20241022", "claude-haiku"),
    ("claude-haiku-5-0-20270101", "claude-haiku"),  # a future name
])
def test_claude_names_go_by_family_word(name: str, family: str) -> None:
    assert resolve_model(name, DEFAULT_ALIASES) == DEFAULT_ALIASES[family]


def test_claude_families_take_what_claude_code_sends() -> None:
    sonnet = resolve_model("claude-sonnet-4-6", DEFAULT_ALIASES)
    assert sonnet == SCOUT and known_vision(sonnet)  # the main model gets screenshots and tools
    assert known_vision(resolve_model("claude-haiku-4-5", DEFAULT_ALIASES))
    opus = resolve_model("claude-opus-4-6", DEFAULT_ALIASES)
    assert opus == "@cf/openai/gpt-oss-120b"
    assert known_vision(resolve_model("claude-opus-4-6", DEFAULT_ALIASES, vision=True,
                                      vision_aliases=DEFAULT_VISION_ALIASES))


def test_claude_aliases_are_overridable() -> None:
    mine = {**DEFAULT_ALIASES, "claude-sonnet": "@cf/qwen/qwen3-30b-a3b-fp8",
            "claude-sonnet-4-5": "@cf/zai-org/glm-4.7-flash"}
    assert resolve_model("claude-3-5-sonnet-20241022", mine) == "@cf/qwen/qwen3-30b-a3b-fp8"
    assert resolve_model("claude-sonnet-4-6", mine) == "@cf/qwen/qwen3-30b-a3b-fp8"
    # an exact or longer alias wins over the family word
    assert resolve_model("claude-sonnet-4-5", mine) == "@cf/zai-org/glm-4.7-flash"
    assert resolve_model("claude-sonnet-4-5-20250929", mine) == "@cf/zai-org/glm-4.7-flash"


@pytest.mark.parametrize("name", ["claude-2.1", "claude-instant-1", "claude-sonnetish-4", "not-claude-sonnet"])
def test_other_claude_names_are_unknown(name: str) -> None:
    with pytest.raises(ModelNotFound):
        resolve_model(name, DEFAULT_ALIASES)


def test_claude_family_needs_its_alias() -> None:
    without = {k: v for k, v in DEFAULT_ALIASES.items() if k != "claude-opus"}
    with pytest.raises(ModelNotFound):
        resolve_model("claude-opus-4-6", without)
