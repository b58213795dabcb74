"""What an OpenAI model name promises, kept: dated/suffixed names resolve to their family (longest alias),
requests with images get the alias's vision model, explicit ids are never swapped, and config wins."""

from __future__ import annotations

import pytest

from cfai_cli.core.catalog import (
    DEFAULT_ALIASES,
    DEFAULT_VISION_ALIASES,
    alias_of,
    known_vision,
    resolve_model,
)
from cfai_cli.core.routing import RoutingConfig, Target
from cfai_cli.errors import ModelNotFound

SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
LLAMA_70B = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
LLAMA_8B = "@cf/meta/llama-3.1-8b-instruct-fast"
MISTRAL = "@cf/mistralai/mistral-small-3.1-24b-instruct"
GEMMA = "@cf/google/gemma-4-26b-a4b-it"
OSS_120B = "@cf/openai/gpt-oss-120b"
OSS_20B = "@cf/openai/gpt-oss-20b"


@pytest.mark.parametrize(("name", "family"), [
    ("gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # longest: not gpt-4o
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("gpt-4.1-2025-04-14", "gpt-4.1"),
    ("gpt-5.1-codex-max", "gpt-5"),  # Codex CLI's default before 0.171
    ("gpt-6.2-sol", "gpt-6"),  # Codex CLI 0.171's default
    ("gpt-6-astra", "gpt-6"),
    ("gpt-5.6-sol", "gpt-5"),
    ("gpt-5.2-codex", "gpt-5"),
    ("gpt-5-codex", "gpt-5"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("o3-pro", "o3"),
    ("o3-mini-high", "o3-mini"),
    ("o4-mini-2025-04-16", "o4-mini"),
    ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
    ("gpt-4-0613", "gpt-4"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("tts-1-hd-1106", "tts-1-hd"),
    ("chatgpt-4o-latest", "chatgpt-4o-latest"),
    ("gpt-image-1-mini", "gpt-image-1-mini"),
    # not a family member: no '-' or '.' right after the alias, or nothing after it
    ("gpt-4oo", None),
    ("gpt-5x", None),
    ("gpt-60", None),
    ("o3-", None),
    ("o5-mini", None),
    ("claude-3-opus", "claude-opus"),  # Claude names go by family word, wherever it stands
    ("claude-2.1", None),
])
def test_family_is_the_longest_alias_followed_by_a_dash_or_dot(name: str, family: str | None) -> None:
    assert alias_of(name, DEFAULT_ALIASES) == family


@pytest.mark.parametrize(("name", "text_model", "vision_model"), [
    ("gpt-4o", SCOUT, SCOUT),  # vision itself: never swapped
    ("gpt-4o-2024-11-20", SCOUT, SCOUT),
    ("gpt-4-turbo", SCOUT, SCOUT),
    ("gpt-4", LLAMA_70B, LLAMA_70B),  # no vision at OpenAI either: no vision alias
    ("gpt-3.5-turbo", LLAMA_8B, LLAMA_8B),
    ("gpt-4o-mini", LLAMA_8B, MISTRAL),
    ("openai/gpt-4o-mini-2024-07-18", LLAMA_8B, MISTRAL),
    ("gpt-4.1-nano", LLAMA_8B, MISTRAL),
    ("gpt-4.1-mini", MISTRAL, MISTRAL),
    ("gpt-5", OSS_120B, GEMMA),
    ("gpt-5.1-codex-max", OSS_120B, GEMMA),
    ("gpt-6.2-sol", OSS_120B, GEMMA),
    ("gpt-5-mini", OSS_20B, GEMMA),
    ("gpt-5-nano", "@cf/zai-org/glm-4.7-flash", GEMMA),
    ("o1", OSS_120B, GEMMA),
    ("o3", OSS_120B, GEMMA),
    ("o3-pro", OSS_120B, GEMMA),
    ("o4-mini", OSS_20B, GEMMA),
    ("o3-mini", OSS_20B, OSS_20B),  # OpenAI's o3-mini takes no images
    # explicit ids are never swapped, whatever they are
    (LLAMA_8B, LLAMA_8B, LLAMA_8B),
    ("workers-ai/" + OSS_120B, OSS_120B, OSS_120B),
])
def test_vision_requests_get_the_alias_vision_model(name: str, text_model: str, vision_model: str) -> None:
    assert resolve_model(name, DEFAULT_ALIASES, vision_aliases=DEFAULT_VISION_ALIASES) == text_model
    assert resolve_model(name, DEFAULT_ALIASES, vision=True, vision_aliases=DEFAULT_VISION_ALIASES) == vision_model


def test_every_vision_alias_names_an_alias_and_a_vision_model() -> None:
    for alias, model in DEFAULT_VISION_ALIASES.items():
        assert alias in DEFAULT_ALIASES and known_vision(model), alias
        assert not known_vision(DEFAULT_ALIASES[alias]), f"{alias} needs no vision alias"


def test_config_overrides_win() -> None:
    aliases = {**DEFAULT_ALIASES, "gpt-4o-mini": "@cf/meta/llama-3.2-11b-vision-instruct", "gpt-5": OSS_20B,
               "house": LLAMA_8B}
    vision = {**DEFAULT_VISION_ALIASES, "gpt-5": "@cf/moonshotai/kimi-k2.6", "house": "@cf/google/gemma-3-12b-it"}
    # an alias pointed at a vision model needs no swap: the vision alias is ignored
    assert resolve_model("gpt-4o-mini", aliases, vision=True, vision_aliases=vision) == \
        "@cf/meta/llama-3.2-11b-vision-instruct"
    assert resolve_model("gpt-5-2025-08-07", aliases, vision_aliases=vision) == OSS_20B
    assert resolve_model("gpt-5-2025-08-07", aliases, vision=True, vision_aliases=vision) == "@cf/moonshotai/kimi-k2.6"
    assert resolve_model("house", aliases, vision=True, vision_aliases=vision) == "@cf/google/gemma-3-12b-it"
    assert resolve_model("house.v2", aliases, vision=True, vision_aliases=vision) == "@cf/google/gemma-3-12b-it"
    # a user alias longer than a default one takes its family members
    assert resolve_model("gpt-5-codex-2025", {**aliases, "gpt-5-codex": "@cf/qwen/qwen3-30b-a3b-fp8"}) == \
        "@cf/qwen/qwen3-30b-a3b-fp8"
    # without vision aliases nothing is swapped
    assert resolve_model("gpt-4o-mini", DEFAULT_ALIASES, vision=True) == LLAMA_8B


def test_unknown_families_still_are_model_not_found() -> None:
    with pytest.raises(ModelNotFound):
        resolve_model("gpt-9-2030-01-01", DEFAULT_ALIASES, vision=True, vision_aliases=DEFAULT_VISION_ALIASES)


def test_routes_apply_vision_to_their_aliases_only() -> None:
    config = RoutingConfig(routes={"best": ("gpt-5", Target("cloudflare", "gpt-4o-mini"), OSS_120B,
                                            Target("groq", "gpt-5"))})
    assert config.resolve("best", DEFAULT_ALIASES, vision=True, vision_aliases=DEFAULT_VISION_ALIASES) == "best"
    assert config.resolve("gpt-5-mini-2025-08-07", DEFAULT_ALIASES, vision=True,
                          vision_aliases=DEFAULT_VISION_ALIASES) == GEMMA
