"""Model names as data: OpenAI aliases, model-id validation, and what we know of each model family.

Pure: standard library and cfai_cli.errors only. The request dialect chosen here is only a hint for
what to *send*; answers are always parsed by their shape (see core.workers.chat).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from cfai_cli.errors import InvalidRequest, ModelNotFound

DEFAULT_CHAT_MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"

# OpenAI model names mapped to the closest Workers AI model. Users override or extend these in the
# config file's [aliases] table; anything that already looks like a Workers AI id passes through.
DEFAULT_ALIASES: dict[str, str] = {
    "gpt-4o": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "gpt-4o-mini": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-4-turbo": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "gpt-4": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    "gpt-3.5-turbo": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-4.1": "@cf/meta/llama-4-scout-17b-16e-instruct",
    "gpt-4.1-mini": "@cf/mistralai/mistral-small-3.1-24b-instruct",
    "gpt-4.1-nano": "@cf/meta/llama-3.1-8b-instruct-fast",
    "gpt-5": "@cf/openai/gpt-oss-120b",
    "gpt-5-mini": "@cf/openai/gpt-oss-20b",
    "gpt-5-nano": "@cf/zai-org/glm-4.7-flash",
    "o1": "@cf/openai/gpt-oss-120b",
    "o3": "@cf/openai/gpt-oss-120b",
    "o3-mini": "@cf/openai/gpt-oss-20b",
    "o4-mini": "@cf/openai/gpt-oss-20b",
    "gpt-oss-120b": "@cf/openai/gpt-oss-120b",
    "gpt-oss-20b": "@cf/openai/gpt-oss-20b",
    "text-embedding-3-small": "@cf/baai/bge-base-en-v1.5",
    "text-embedding-3-large": "@cf/baai/bge-large-en-v1.5",
    "text-embedding-ada-002": "@cf/baai/bge-base-en-v1.5",
    "dall-e-2": "@cf/black-forest-labs/flux-1-schnell",
    "dall-e-3": "@cf/black-forest-labs/flux-1-schnell",
    "gpt-image-1": "@cf/black-forest-labs/flux-1-schnell",
    "whisper-1": "@cf/openai/whisper-large-v3-turbo",
    "gpt-4o-transcribe": "@cf/openai/whisper-large-v3-turbo",
    "gpt-4o-mini-transcribe": "@cf/openai/whisper-large-v3-turbo",
    "tts-1": "@cf/myshell-ai/melotts",
    "tts-1-hd": "@cf/myshell-ai/melotts",
    "gpt-4o-mini-tts": "@cf/myshell-ai/melotts",
}

# Families that speak OpenAI Chat Completions on /ai/run (reference §2.1, §2.7). Everything else gets
# the stricter native body, which the chat-dialect models accept too; so a model missing here still works.
_CHAT_DIALECT = re.compile(
    r"^@cf/(zai-org/glm|moonshotai/kimi|google/gemma-4|nvidia/nemotron|openai/gpt-oss|deepseek-ai/deepseek-v)",
)
# Models that stream nothing on /ai/run: ask once, then replay the answer as a stream (reference §2.6).
_NO_UPSTREAM_STREAM = re.compile(r"^@cf/openai/gpt-oss")

_MODEL_ID = re.compile(r"^@(cf|hf)/[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_MODEL_ID = 256  # longer ids exist nowhere, and a URL path part that long is refused by httpx (InvalidURL)


def is_account_id(text: str) -> bool:
    """Safe to put in the API path as a Cloudflare account id (real ones are 32 hex characters)."""
    return _ACCOUNT_ID.fullmatch(text) is not None


def validate_model_id(model_id: str, *, param: str = "model") -> str:
    """A Workers AI id safe to put in a URL path: `@cf/author/name`, no `..`, `?`, `%`, spaces or controls."""
    if len(model_id) > MAX_MODEL_ID or not _MODEL_ID.fullmatch(model_id) or ".." in model_id:
        raise InvalidRequest(
            f"Invalid model id {model_id[:MAX_MODEL_ID]!r}{'… (too long)' if len(model_id) > MAX_MODEL_ID else ''}: "
            "expected an alias such as 'gpt-4o-mini' or a Workers AI id "
            "such as '@cf/meta/llama-3.3-70b-instruct-fp8-fast'.",
            param=param,
            code="invalid_model",
        )
    return model_id


def resolve_model(name: str, aliases: Mapping[str, str], *, param: str = "model") -> str:
    """The Workers AI id for an OpenAI alias or an id given as is."""
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
    target = aliases.get(name)
    if target is None:
        target = aliases.get(bare)
    if target is None:
        if not _PLAIN_NAME.fullmatch(bare):
            validate_model_id(name, param=param)
        close = difflib.get_close_matches(name, list(aliases), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelNotFound(
            f"The model {name!r} does not exist.{hint} Use an alias (`cfai config show` lists them) or a "
            "Workers AI id such as '@cf/meta/llama-3.3-70b-instruct-fp8-fast' (`cfai models` lists them).",
            param=param,
        )
    return validate_model_id(target, param=param)


# Models documented to take images (reference §2.1, §2.9); the catalogue's own flag for it is unconfirmed.
_VISION = re.compile(r"^@cf/(meta/llama-3\.2-11b-vision|meta/llama-4-scout|mistralai/mistral-small-3\.1|google/gemma-3"
                     r"|google/gemma-4|moonshotai/kimi)")


def known_vision(model_id: str) -> bool:
    return bool(_VISION.match(model_id))


def speaks_chat_dialect(model_id: str) -> bool:
    return bool(_CHAT_DIALECT.match(model_id))


def streams_upstream(model_id: str) -> bool:
    return not _NO_UPSTREAM_STREAM.match(model_id)
