"""The token estimator: its pieces, its documented per-piece rules, the chat overhead, the tokenize request."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import Message
from cfai_cli.core.tokens import (
    TOKENS_PER_CONVERSATION,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TokenizeRequest,
    check_tokenize,
    estimate_message,
    estimate_result,
    estimate_tokens,
    pieces,
    tokenizer_family,
)
from cfai_cli.errors import InvalidRequest


def test_empty_text_is_zero_tokens() -> None:
    assert estimate_tokens("") == 0
    assert pieces("") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, world! 12345", ["Hello", ",", " world", "!", " ", "123", "45"]),
    ("don't stop", ["don", "'t", " stop"]),
    ("x = f(a_b)\n\n    return", ["x", " =", " f", "(a", "_b", ")\n\n", "   ", " return"]),
    ("你好，世界", ["你好", "，世界"]),
    ("1234567", ["123", "456", "7"]),
    ("2024-11-24", ["202", "4", "-", "11", "-", "24"]),
])
def test_pieces_follow_the_bpe_pre_tokenizer(text: str, expected: list[str]) -> None:
    assert pieces(text) == expected


# Each count follows from the rules in core/tokens.py; the comment says which rule.
@pytest.mark.parametrize(("text", "tokens"), [
    ("Hello", 1),
    ("Hello world", 2),  # a word with its leading space is one piece
    ("Hello, world!", 4),
    (" 12345", 3),  # " " + "123" + "45": numbers in groups of three
    ("2024-11-24", 6),  # "202" "4" "-" "11" "-" "24": a dash never joins the number after it
    ("don't", 2),  # contractions are their own token
    ("instruct", 2),  # 8 letters: one more than WORD_CHARS
    ("Workers", 1),  # 7 letters: one token
    ("antidisestablishmentarianism", 7),  # 28 letters: 1 + ceil(21 / 4)
    ("!!!!", 2),  # punctuation: two characters a token
    (")\n", 1),  # trailing newlines ride along with punctuation
    (" " * 40, 3),  # a run of spaces: one token per 16
    ("你好，世界", 5),  # CJK: ceil(2 * 4/5) + ceil(3 * 4/5)
    ("こんにちは", 4),  # kana count as CJK: ceil(5 * 4/5)
    ("Здравствуйте, мир", 6),  # Cyrillic by bytes: 12 letters x 2 bytes x 3/4 = 18 letters -> 1 + ceil(11/4) = 4
    ("naïve café", 2),  # an accented letter weighs 1.5 ASCII letters; both words stay short
    ("🎉", 2),  # a 4-byte emoji: ceil(4 / 3)
])
def test_known_counts(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_long_words_and_numbers_cost_more_than_short_ones() -> None:
    assert estimate_tokens("a") == estimate_tokens("abcdefg") == 1
    assert estimate_tokens("a" * 12) < estimate_tokens("a" * 40) < estimate_tokens("a" * 100)
    assert estimate_tokens("7" * 9) == 3 and estimate_tokens("7" * 10) == 4


def test_cjk_is_about_a_token_a_character_and_more_than_len_over_4() -> None:
    text = "人工智能是计算机科学的一个分支" * 10
    assert 0.7 * len(text) <= estimate_tokens(text) <= len(text)
    assert estimate_tokens(text) > len(text) / 4 * 2


def test_english_prose_is_close_to_four_characters_a_token() -> None:
    prose = ("The quick brown fox jumps over the lazy dog. Cloudflare Workers AI runs open models on a global "
             "network; this proxy speaks the OpenAI API in front of it, so existing clients work unchanged. ") * 20
    assert 3.5 <= len(prose) / estimate_tokens(prose) <= 6


def test_repeating_a_text_scales_the_count() -> None:
    one = "def handler(request):\n    return {'ok': True, 'n': 42}\n"
    assert estimate_tokens(one * 10) == 10 * estimate_tokens(one)


def test_counts_never_fall_as_text_grows_at_word_boundaries() -> None:
    text = ("Counting tokens for 3 models: Llama-3.3, Qwen3 and gpt-oss (o200k_harmony); 你好 world, "
            "naïve café — ok?  Done.\n\n    indented code_here(x=1)")
    cuts = [i for i, c in enumerate(text) if c == " "] + [len(text)]
    counts = [estimate_tokens(text[:i]) for i in cuts]
    assert counts == sorted(counts)
    assert counts[-1] == estimate_tokens(text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=200))
def test_pieces_cover_the_text_and_every_piece_costs_at_least_one(text: str) -> None:
    parts = pieces(text)
    assert "".join(parts) == text
    assert estimate_tokens(text) >= len(parts)
    assert (estimate_tokens(text) == 0) == (text == "")


def test_a_message_adds_the_template_overhead() -> None:
    user = Message.model_validate({"role": "user", "content": "Hello world"})
    assert estimate_message(user) == TOKENS_PER_MESSAGE + 2
    named = Message.model_validate({"role": "user", "content": "Hello world", "name": "alice"})
    assert estimate_message(named) == TOKENS_PER_MESSAGE + 2 + TOKENS_PER_NAME + 1
    parts = Message.model_validate({"role": "user", "content": [
        {"type": "text", "text": "Hello"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]})
    assert estimate_message(parts) == TOKENS_PER_MESSAGE + 1  # only text parts are counted
    call = Message.model_validate({"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]})
    assert estimate_message(call) > TOKENS_PER_MESSAGE + 4  # the call's name and arguments are text too


def test_estimate_result_for_texts_and_messages() -> None:
    texts = estimate_result(TokenizeRequest(model="m", input=["Hello world", "", "Hi"]), "@cf/x/y")
    assert texts["counts"] == [2, 0, 1] and texts["total_tokens"] == 3
    assert texts["method"] == "estimate" and texts["tokenizer"] is None and "Estimated" in texts["note"]
    assert texts["object"] == "tokenize" and texts["model"] == "@cf/x/y"
    chat = estimate_result(TokenizeRequest.model_validate({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}]}), "@cf/x/y")
    assert chat["counts"] == [TOKENS_PER_MESSAGE + 3, TOKENS_PER_MESSAGE + 2]
    assert chat["total_tokens"] == sum(chat["counts"]) + TOKENS_PER_CONVERSATION
    assert "chat template" in chat["note"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": "x", "messages": [{"role": "user", "content": "x"}]}, "messages"),
    ({"model": "m", "input": []}, "input"),
])
def test_exactly_one_of_input_and_messages(body: dict[str, object], param: str) -> None:
    req = validate_request(TokenizeRequest, body)
    with pytest.raises(InvalidRequest) as caught:
        check_tokenize(req)
    assert caught.value.param == param and caught.value.status == 400


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": ["a", 1]}, "input[1]"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"input": "x"}, "model"),
])
def test_request_validation_names_the_parameter(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(TokenizeRequest, body)
    assert caught.value.param == param


@pytest.mark.parametrize(("model_id", "family"), [
    ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "llama3"),
    ("@cf/meta/llama-3.1-8b-instruct-fast", "llama3"),
    ("@cf/meta/llama-3.2-11b-vision-instruct", "llama3"),
    ("@cf/meta/llama-guard-3-8b", "llama3"),
    ("@hf/meta-llama/meta-llama-3-8b-instruct", "llama3"),
    ("@cf/meta/llama-4-scout-17b-16e-instruct", "llama4"),
    ("@cf/meta/llama-2-7b-chat-fp16", None),
    ("@cf/openai/gpt-oss-120b", None),
    ("@cf/qwen/qwen3-30b-a3b-fp8", None),
])
def test_tokenizer_family(model_id: str, family: str | None) -> None:
    assert tokenizer_family(model_id) == family
