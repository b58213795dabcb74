"""service.tokens: the exact path when a tokenizer is found, the estimate otherwise, and no network ever."""

from __future__ import annotations

import pytest

from cfai_cli.core.tokens import TOKENS_PER_CONVERSATION, TOKENS_PER_MESSAGE, TokenizeRequest
from cfai_cli.errors import ModelNotFound, UpstreamError
from cfai_cli.service.tokens import THREAD_CHARS, Tokenizer, bundled_tokenizer, count_tokens, local_context
from cfai_cli.settings import load_settings

pytestmark = pytest.mark.anyio
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def by_characters(model_id: str) -> Tokenizer | None:
    """A stand-in tokenizer (one token a character) for Llama models only."""
    return Tokenizer("chars", len) if "llama" in model_id else None


async def test_an_exact_tokenizer_is_used_and_named() -> None:
    async with local_context(load_settings()) as ctx:
        texts = await count_tokens(ctx, TokenizeRequest(model="gpt-4", input=["abc", "de"]), lookup=by_characters)
        chat = await count_tokens(ctx, TokenizeRequest.model_validate({"model": LLAMA, "messages": [
            {"role": "user", "content": "abc", "name": "al"}]}), lookup=by_characters)
        other = await count_tokens(ctx, TokenizeRequest(model="@cf/qwen/qwen3-30b-a3b-fp8", input="abc"),
                                   lookup=by_characters)
    assert texts["method"] == "exact" and texts["tokenizer"] == "chars" and texts["counts"] == [3, 2]
    assert texts["model"] == LLAMA and "Exact" in texts["note"]
    assert chat["counts"] == [TOKENS_PER_MESSAGE + 3 + 1 + 2]
    assert chat["total_tokens"] == chat["counts"][0] + TOKENS_PER_CONVERSATION
    assert other["method"] == "estimate" and other["tokenizer"] is None


async def test_big_inputs_give_the_same_answer_from_a_thread() -> None:
    text = "word" + " word" * (THREAD_CHARS // 5)
    async with local_context(load_settings()) as ctx:
        big = await count_tokens(ctx, TokenizeRequest(model="@cf/qwen/qwen3-30b-a3b-fp8", input=text))
    assert big["total_tokens"] == THREAD_CHARS // 5 + 1


async def test_the_model_is_checked_before_anything_else() -> None:
    async with local_context(load_settings()) as ctx:
        with pytest.raises(ModelNotFound):
            await count_tokens(ctx, TokenizeRequest(model="nope", input="x"), lookup=by_characters)


async def test_the_local_context_never_reaches_the_network() -> None:
    async with local_context(load_settings()) as ctx:  # no credentials in the environment (autouse fixture)
        with pytest.raises(UpstreamError, match="local-only"):
            await ctx.workers.run("@cf/qwen/qwen3-30b-a3b-fp8", {"prompt": "x"})


def test_the_bundled_tokenizer_when_llama_models_is_installed() -> None:
    pytest.importorskip("llama_models")
    tokenizer = bundled_tokenizer(LLAMA)
    assert tokenizer is not None and tokenizer.name == "llama-models/llama3"
    assert tokenizer.count("Hello world") == 2 and tokenizer.count("") == 0
    assert bundled_tokenizer("@cf/qwen/qwen3-30b-a3b-fp8") is None
