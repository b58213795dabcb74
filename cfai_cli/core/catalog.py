"""Model names as data: OpenAI aliases, model-id validation, and what we know of each model family.

Pure: standard library, core.cost, core.defaults and cfai_cli.errors only. The request dialect chosen here is
only a hint for what to *send*; answers are always parsed by their shape (see core.workers.chat).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from cfai_cli.core.cost import Prices
from cfai_cli.core.defaults import DEFAULT_CHAT_MODEL as DEFAULT_CHAT_MODEL
from cfai_cli.core.defaults import DEFAULT_EMBEDDING_MODEL as DEFAULT_EMBEDDING_MODEL
from cfai_cli.core.defaults import DEFAULT_MODERATION_MODEL as DEFAULT_MODERATION_MODEL
from cfai_cli.core.defaults import DEFAULT_RERANK_MODEL as DEFAULT_RERANK_MODEL
from cfai_cli.errors import InvalidRequest, ModelNotFound

SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"  # vision + tools + 131k context, like gpt-4o's 128k
MISTRAL_SMALL = "@cf/mistralai/mistral-small-3.1-24b-instruct"
GEMMA_4 = "@cf/google/gemma-4-26b-a4b-it"  # vision + tools + reasoning

# Context windows the backend enforces, from the reference's model table (§1.6; model pages, and issue #29731
# for gemma-4, which documents 256,000 but refuses past 131,072). The live catalogue may know more models; where
# both know one, the smaller number is the one that holds.
CONTEXT_WINDOWS: dict[str, int] = {
    "@cf/meta/llama-3.1-8b-instruct-fp8": 32_000,
    "@cf/meta/llama-3.2-11b-vision-instruct": 128_000,
    DEFAULT_CHAT_MODEL: 24_000,
    SCOUT: 131_000,
    MISTRAL_SMALL: 128_000,
    "@cf/qwen/qwen3-30b-a3b-fp8": 32_768,
    "@cf/openai/gpt-oss-120b": 128_000,
    "@cf/zai-org/glm-4.7-flash": 131_072,
    GEMMA_4: 131_072,
    "@cf/moonshotai/kimi-k2.6": 262_144,
}
# Published prices (USD) for the usual models, for estimating neurons when the live catalogue (its `price`
# property, core.cost.parse_prices) cannot be read: the reference's model tables (§2.1 text, §4 embeddings,
# §5 images, §6 speech recognition, §8 text-to-speech; DOCS pricing.mdx and model pages). The live catalogue
# wins where it has a price.
PUBLISHED_PRICES: dict[str, Prices] = {
    "@cf/meta/llama-3.1-8b-instruct": Prices(input_per_m=0.282, output_per_m=0.827),
    "@cf/meta/llama-3.1-8b-instruct-fp8": Prices(input_per_m=0.152, output_per_m=0.287),
    "@cf/meta/llama-3.2-1b-instruct": Prices(input_per_m=0.027, output_per_m=0.201),
    "@cf/meta/llama-3.2-3b-instruct": Prices(input_per_m=0.051, output_per_m=0.335),
    "@cf/meta/llama-3.2-11b-vision-instruct": Prices(input_per_m=0.049, output_per_m=0.68),
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast": Prices(input_per_m=0.29, output_per_m=2.25),
    SCOUT: Prices(input_per_m=0.27, output_per_m=0.85),
    MISTRAL_SMALL: Prices(input_per_m=0.35, output_per_m=0.56),
    "@cf/qwen/qwen3-30b-a3b-fp8": Prices(input_per_m=0.051, output_per_m=0.34),
    "@cf/deepseek-ai/deepseek-r1-distill-qwen-32b": Prices(input_per_m=0.497, output_per_m=4.881),
    "@cf/openai/gpt-oss-120b": Prices(input_per_m=0.35, output_per_m=0.75),
    "@cf/zai-org/glm-4.7-flash": Prices(input_per_m=0.0605, output_per_m=0.40),
    GEMMA_4: Prices(input_per_m=0.10, output_per_m=0.30),
    "@cf/moonshotai/kimi-k2.6": Prices(input_per_m=0.95, cached_input_per_m=0.16, output_per_m=4.00),
    # Also on Cloudflare's pricing page (developers.cloudflare.com/workers-ai/platform/pricing/, updated 2026-08-28):
    "@cf/meta/llama-3.1-8b-instruct-fp8-fast": Prices(input_per_m=0.045, output_per_m=0.384),
    "@cf/meta/llama-3.1-70b-instruct-fp8-fast": Prices(input_per_m=0.293, output_per_m=2.253),
    "@cf/meta/llama-guard-3-8b": Prices(input_per_m=0.484, output_per_m=0.030),
    "@cf/mistral/mistral-7b-instruct-v0.1": Prices(input_per_m=0.110, output_per_m=0.190),
    "@cf/openai/gpt-oss-20b": Prices(input_per_m=0.200, output_per_m=0.300),
    "@cf/meta/m2m100-1.2b": Prices(input_per_m=0.342, output_per_m=0.342),
    "@cf/baai/bge-small-en-v1.5": Prices(input_per_m=0.020),
    "@cf/baai/bge-base-en-v1.5": Prices(input_per_m=0.067),
    "@cf/baai/bge-large-en-v1.5": Prices(input_per_m=0.20),
    "@cf/baai/bge-m3": Prices(input_per_m=0.0118),
    "@cf/qwen/qwen3-embedding-0.6b": Prices(input_per_m=0.012),
    "@cf/black-forest-labs/flux-1-schnell": Prices(per_tile=0.0000528, per_step=0.0001056),
    "@cf/leonardo/phoenix-1.0": Prices(per_tile=0.0058, per_step=0.00011),
    "@cf/leonardo/lucid-origin": Prices(per_tile=0.007, per_step=0.000132),
    "@cf/black-forest-labs/flux-2-dev": Prices(per_input_tile=0.000413, per_tile=0.000825, tile_step=True),
    "@cf/deepgram/nova-3": Prices(per_audio_minute=0.0052),
    "@cf/openai/whisper": Prices(per_audio_minute=0.0005),
    "@cf/openai/whisper-large-v3-turbo": Prices(per_audio_minute=0.00051),
    "@cf/myshell-ai/melotts": Prices(per_audio_minute=0.0002),  # of the audio it makes
    "@cf/deepgram/aura-1": Prices(per_k_characters=0.015),  # of the text it speaks
}


FLUX_2_KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"  # every OpenAI size, seeds
FLUX_2_KLEIN_HD = "@cf/black-forest-labs/flux-2-klein-9b"  # quality "hd"/"high" with an OpenAI image alias
AURA_1 = "@cf/deepgram/aura-1"  # every OpenAI response_format
LLAMA_GUARD = "@cf/meta/llama-guard-3-8b"  # /v1/moderations (docs/moderations.md)
BGE_RERANKER = "@cf/baai/bge-reranker-base"  # the one reranker on Workers AI (docs/rerank.md)

# OpenAI model names mapped to a Workers AI model that keeps what the OpenAI name promises (images in,
# sizes, audio formats; docs/configuration.md "Model aliases"). Users override or extend these in the config file's
# [aliases] table; anything that already looks like a Workers AI id passes through.
DEFAULT_ALIASES: dict[str, str] = {
    "gpt-4o": SCOUT,
    "chatgpt-4o-latest": SCOUT,
    "gpt-4o-mini": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-4-turbo": SCOUT,
    "gpt-4": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",  # no vision at OpenAI either
    "gpt-3.5-turbo": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-4.1": SCOUT,
    "gpt-4.1-mini": MISTRAL_SMALL,
    "gpt-4.1-nano": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-6": "@cf/openai/gpt-oss-120b",  # the family of Codex CLI's default model (gpt-6.2-sol in 0.171)
    "gpt-5": "@cf/openai/gpt-oss-120b",
    "gpt-5-mini": "@cf/openai/gpt-oss-20b",
    "gpt-5-nano": "@cf/zai-org/glm-4.7-flash",
    "o1": "@cf/openai/gpt-oss-120b",
    "o3": "@cf/openai/gpt-oss-120b",
    "o3-mini": "@cf/openai/gpt-oss-20b",
    "o4-mini": "@cf/openai/gpt-oss-20b",
    "codex-mini-latest": "@cf/openai/gpt-oss-20b",
    "gpt-oss-120b": "@cf/openai/gpt-oss-120b",
    "gpt-oss-20b": "@cf/openai/gpt-oss-20b",
    # Claude names (the Anthropic Messages API, Claude Code). Any dated or future name finds its family by
    # the family word: claude-3-5-sonnet-20241022 and claude-sonnet-4-6 -> claude-sonnet (see alias_of).
    "claude-sonnet": SCOUT,  # tools + vision + 131k context: Claude Code's main model must take all three
    "claude-haiku": MISTRAL_SMALL,  # fast, tools + vision, 128k context, no reasoning pass to wait for
    # The strongest text + tools model every account can run (Kimi K2.6 is stronger, but Workers Paid only).
    "claude-opus": "@cf/openai/gpt-oss-120b",
    "text-embedding-3-small": "@cf/baai/bge-base-en-v1.5",
    "text-embedding-3-large": "@cf/baai/bge-large-en-v1.5",
    "text-embedding-ada-002": "@cf/baai/bge-base-en-v1.5",
    "dall-e-2": FLUX_2_KLEIN,
    "dall-e-3": FLUX_2_KLEIN,
    "gpt-image-1": FLUX_2_KLEIN,
    "gpt-image-1-mini": FLUX_2_KLEIN,
    "gpt-image-1.5": FLUX_2_KLEIN,
    "whisper-1": "@cf/openai/whisper-large-v3-turbo",
    "gpt-4o-transcribe": "@cf/openai/whisper-large-v3-turbo",
    "gpt-4o-mini-transcribe": "@cf/openai/whisper-large-v3-turbo",
    "tts-1": AURA_1,
    "tts-1-hd": AURA_1,
    "gpt-4o-mini-tts": AURA_1,
    "omni-moderation-latest": LLAMA_GUARD,
    "omni-moderation-2024-09-26": LLAMA_GUARD,
    "text-moderation-latest": LLAMA_GUARD,
    "text-moderation-stable": LLAMA_GUARD,
    # Rerank names (Cohere's, Jina's) for /v1/rerank. `rerank` and `jina-reranker` are families too:
    # rerank-v5.0-pro -> rerank, jina-reranker-v2-base-multilingual -> jina-reranker (see alias_of).
    "rerank": BGE_RERANKER,
    "rerank-v3.5": BGE_RERANKER,
    "rerank-english-v3.0": BGE_RERANKER,
    "rerank-multilingual-v3.0": BGE_RERANKER,
    "rerank-english-v2.0": BGE_RERANKER,
    "jina-reranker": BGE_RERANKER,
}

# When a chat or Responses request carries images and its alias names a model not known to take them,
# the alias's vision model serves it instead; text-only requests keep the primary (cheaper or stronger)
# model. The config file's [vision_aliases] table is merged over these. OpenAI names without vision
# (gpt-3.5-turbo, gpt-4, o3-mini) are left out on purpose: OpenAI refuses their images too.
DEFAULT_VISION_ALIASES: dict[str, str] = {
    "gpt-4o-mini": MISTRAL_SMALL,
    "gpt-4.1-nano": MISTRAL_SMALL,
    "gpt-6": GEMMA_4,
    "gpt-5": GEMMA_4,
    "gpt-5-mini": GEMMA_4,
    "gpt-5-nano": GEMMA_4,
    "o1": GEMMA_4,
    "o3": GEMMA_4,
    "o4-mini": GEMMA_4,
    "claude-opus": GEMMA_4,
}

# Claude model families, found by word in any Claude model name (`claude-<version>-<family>-<date>` before
# Claude 4, `claude-<family>-<version>[-<date>]` since).
CLAUDE_FAMILIES = ("opus", "sonnet", "haiku")

# The patterns here are strings, compiled by `re` on first use and kept in its cache: compiling them all at
# import was a few ms of every command, `cfai --help` included, which uses none of them.

# Families that speak OpenAI Chat Completions on /ai/run (reference §2.1, §2.7). Everything else gets
# the stricter native body, which the chat-dialect models accept too; so a model missing here still works.
_CHAT_DIALECT = (
    r"^@cf/(zai-org/glm|moonshotai/kimi|google/gemma-4|nvidia/nemotron|openai/gpt-oss|deepseek-ai/deepseek-v)"
)
# Models that stream nothing on /ai/run: ask once, then replay the answer as a stream (reference §2.6).
_NO_UPSTREAM_STREAM = r"^@cf/openai/gpt-oss"

_MODEL_ID = r"^@(cf|hf)/[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$"
_PLAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_ACCOUNT_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_MODEL_ID = 256  # longer ids exist nowhere, and a URL path part that long is refused by httpx (InvalidURL)


def is_account_id(text: str) -> bool:
    """Safe to put in the API path as a Cloudflare account id (real ones are 32 hex characters)."""
    return re.fullmatch(_ACCOUNT_ID, text) is not None


def validate_model_id(model_id: str, *, param: str = "model") -> str:
    """A Workers AI id safe to put in a URL path: `@cf/author/name`, no `..`, `?`, `%`, spaces or controls."""
    if len(model_id) > MAX_MODEL_ID or not re.fullmatch(_MODEL_ID, model_id) or ".." in model_id:
        raise InvalidRequest(
            f"Invalid model id {model_id[:MAX_MODEL_ID]!r}{'… (too long)' if len(model_id) > MAX_MODEL_ID else ''}: "
            "expected an alias such as 'gpt-4o-mini' or a Workers AI id "
            "such as '@cf/meta/llama-3.3-70b-instruct-fp8-fast'.",
            param=param,
            code="invalid_model",
        )
    return model_id


def alias_of(name: str, aliases: Mapping[str, str]) -> str | None:
    """The alias a model name stands for: the name itself, else its family, else None.

    A name that is not an alias but starts with one followed by '-' or '.' belongs to the *longest* such
    alias, so OpenAI's dated and suffixed names keep working: gpt-4o-2024-08-06 -> gpt-4o,
    gpt-4.1-mini-2025-04-14 -> gpt-4.1-mini, gpt-5.1-codex-max -> gpt-5, gpt-6.2-sol -> gpt-6, o3-pro -> o3.
    A Claude name with no such alias belongs to `claude-<family>` by its family word, wherever the word
    stands: claude-3-5-sonnet-20241022, claude-sonnet-4-6 -> claude-sonnet; claude-opus-4-1 -> claude-opus.
    """
    if name in aliases:
        return name
    family = None
    for alias in aliases:
        if (len(name) > len(alias) + 1 and name.startswith(alias) and name[len(alias)] in "-."
                and (family is None or len(alias) > len(family))):
            family = alias
    if family is None and name.startswith("claude-"):
        words = name.split("-")
        family = next((f"claude-{w}" for w in CLAUDE_FAMILIES if w in words and f"claude-{w}" in aliases), None)
    return family


def resolve_model(name: str, aliases: Mapping[str, str], *, param: str = "model", vision: bool = False,
                  vision_aliases: Mapping[str, str] | None = None) -> str:
    """The Workers AI id for an OpenAI alias (or a dated/suffixed name of its family) or an id given as is.

    `vision`: the request carries images, so an alias whose model is not known to take them resolves to
    its entry in `vision_aliases` when it has one. An explicit `@cf/...` id is never swapped.
    """
    name = name.strip()
    if not name:
        raise InvalidRequest("'model' must not be empty.", param=param, code="invalid_model")
    if name.startswith("@"):
        return validate_model_id(name, param=param)
    # OpenAI-style prefixes some clients add ("openai/gpt-4o", "workers-ai/@cf/...").
    for prefix in ("workers-ai/", "cloudflare/", "cf/", "openai/"):
        if name.startswith(prefix + "@"):
            return validate_model_id(name[len(prefix) :], param=param)
    bare = name.removeprefix("openai/")
    alias = name if name in aliases else alias_of(bare, aliases)
    if alias is None:
        if not re.fullmatch(_PLAIN_NAME, bare):
            validate_model_id(name, param=param)
        import difflib  # an unknown name is the rare path: not every command's import

        close = difflib.get_close_matches(name, list(aliases), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelNotFound(
            f"The model {name!r} does not exist.{hint} Use an alias (`cfai config show` lists them) or a "
            "Workers AI id such as '@cf/meta/llama-3.3-70b-instruct-fp8-fast' (`cfai models` lists them).",
            param=param,
        )
    target = aliases[alias]
    if vision and vision_aliases and alias in vision_aliases and not known_vision(target):
        target = vision_aliases[alias]
    return validate_model_id(target, param=param)


# Models documented to take images (reference §2.1, §2.9); the catalogue's own flag for it is unconfirmed.
_VISION = (r"^@cf/(meta/llama-3\.2-11b-vision|meta/llama-4-scout|mistralai/mistral-small-3\.1|google/gemma-3"
           r"|google/gemma-4|moonshotai/kimi)")


def known_vision(model_id: str) -> bool:
    return re.match(_VISION, model_id) is not None


@functools.lru_cache(maxsize=1024)  # asked per request of the few ids in use: re's cache lookup and match once each
def speaks_chat_dialect(model_id: str) -> bool:
    return re.match(_CHAT_DIALECT, model_id) is not None


@functools.lru_cache(maxsize=1024)
def streams_upstream(model_id: str) -> bool:
    return re.match(_NO_UPSTREAM_STREAM, model_id) is None
