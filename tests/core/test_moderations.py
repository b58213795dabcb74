"""The pure moderations pieces: `input` in its three shapes, both guard verdict shapes, the S-code table."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.catalog import DEFAULT_ALIASES, resolve_model
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.moderations import CATEGORIES, ModerationInput, ModerationRequest
from cfai_cli.core.translate.moderations import (
    GUARD_NAMES,
    GUARD_TO_OPENAI,
    GuardVerdict,
    check_classifiable,
    from_guard,
    moderation_result,
    openai_categories,
    parse_guard,
    to_workers_guard,
)
from cfai_cli.errors import InvalidRequest, UpstreamError
from tests.openai_schema import validate

GUARD = "@cf/meta/llama-guard-3-8b"


def inputs(body: dict[str, Any]) -> list[ModerationInput]:
    return validate_request(ModerationRequest, body).inputs()


def test_input_shapes() -> None:
    assert inputs({"input": "hi"}) == [ModerationInput("hi")]
    assert inputs({"input": ["a", "b"]}) == [ModerationInput("a"), ModerationInput("b")]
    # A multi-modal list is one input (one result), its text parts read together, images counted.
    parts = [{"type": "text", "text": "first"}, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
             {"type": "text", "text": "second"}]
    assert inputs({"input": parts}) == [ModerationInput("first\nsecond", images=1)]
    assert validate_request(ModerationRequest, {"input": "x"}).model == "omni-moderation-latest"


@pytest.mark.parametrize(("body", "param"), [
    ({"input": []}, "input"),
    ({"input": 3}, "input"),
    ({}, "input"),
    ({"input": ["ok", {"type": "text", "text": "x"}]}, "input[0]"),
    ({"input": [{"type": "audio", "text": "x"}]}, "input[0].type"),
    ({"input": [{"type": "text", "text": 5}]}, "input[0].text"),
    ({"input": [{"type": "image_url", "image_url": "https://x.test/a.png"}]}, "input[0].image_url.url"),
    ({"input": "x", "model": 7}, "model"),
])
def test_bad_input_names_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inputs(body)
    assert caught.value.param == param


def test_image_only_input_is_refused_clearly() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_classifiable(ModerationInput("", images=2))
    assert caught.value.param == "input" and caught.value.code == "image_input_unsupported"
    assert "text only" in caught.value.message
    check_classifiable(ModerationInput("text", images=1))  # text next to an image is classified


@pytest.mark.parametrize(("response", "safe", "codes"), [
    ({"safe": True, "categories": []}, True, ()),
    ({"safe": False, "categories": ["S1", "S10"]}, False, ("S1", "S10")),
    ({"safe": False, "categories": ["S9: Indiscriminate Weapons."]}, False, ("S9",)),
    ({"safe": "false", "categories": "S2,S3"}, False, ("S2", "S3")),
    ("safe", True, ()),
    ("  Safe\n", True, ()),
    ("unsafe\nS1,S10", False, ("S1", "S10")),
    ("unsafe\nS11", False, ("S11",)),
    ("unsafe S2, s14", False, ("S2", "S14")),
    ("unsafe", False, ()),
    ('{"safe": false, "categories": ["S12"]}', False, ("S12",)),
])
def test_both_guard_shapes_parse(response: Any, safe: bool, codes: tuple[str, ...]) -> None:
    verdict = parse_guard({"response": response, "usage": {"prompt_tokens": 200, "completion_tokens": 4}},
                          model=GUARD)
    assert (verdict.safe, verdict.categories) == (safe, codes)
    assert (verdict.prompt_tokens, verdict.completion_tokens) == (200, 4)


@pytest.mark.parametrize("result", [{"response": "Sure! Here is a poem."}, {"response": {"answer": 1}}, {}, None])
def test_not_a_verdict(result: Any) -> None:
    # From a model that is not a guard: the request named the wrong model (400 on `model`).
    with pytest.raises(InvalidRequest) as wrong:
        parse_guard(result, model="@cf/meta/llama-3.1-8b-instruct")
    assert wrong.value.param == "model" and wrong.value.code == "not_a_guard_model"
    # From a guard model: Workers AI misbehaved (502).
    with pytest.raises(UpstreamError) as caught:
        parse_guard(result, model=GUARD)
    assert caught.value.status == 502 and caught.value.code == "bad_guard_answer"


def test_every_guard_code_is_mapped_and_names_real_openai_categories() -> None:
    assert set(GUARD_TO_OPENAI) == set(GUARD_NAMES) == {f"S{n}" for n in range(1, 15)}
    assert {c for names in GUARD_TO_OPENAI.values() for c in names} <= set(CATEGORIES)


@pytest.mark.parametrize(("codes", "on"), [
    ((), set()),
    (("S1",), {"violence", "illicit", "illicit/violent"}),
    (("S2",), {"illicit"}),
    (("S4",), {"sexual", "sexual/minors"}),
    (("S10",), {"hate", "harassment"}),
    (("S10", "S1"), {"hate", "harassment", "violence", "illicit", "illicit/violent", "hate/threatening",
                     "harassment/threatening"}),
    (("S11",), {"self-harm", "self-harm/intent", "self-harm/instructions"}),
    (("S6", "S13"), set()),
    (("S99",), set()),
])
def test_category_table(codes: tuple[str, ...], on: set[str]) -> None:
    categories = openai_categories(codes)
    assert list(categories) == list(CATEGORIES)
    assert {name for name, flag in categories.items() if flag} == on


def test_result_scores_flags_and_extension() -> None:
    result = moderation_result(GuardVerdict(False, ("S7",)))
    # Unsafe by the guard's verdict even when no OpenAI category applies; the raw code says why.
    assert result["flagged"] is True and not any(result["categories"].values())
    assert result["cfai_guard_categories"] == ["S7"]
    assert moderation_result(GuardVerdict(False))["flagged"] is True  # "unsafe" with no code at all
    unsafe = moderation_result(GuardVerdict(False, ("S12",)))
    assert unsafe["category_scores"]["sexual"] == 1.0 and unsafe["category_scores"]["violence"] == 0.0
    assert set(unsafe["category_scores"].values()) == {0.0, 1.0}
    assert all(types == ["text"] for types in unsafe["category_applied_input_types"].values())
    answer = from_guard([GuardVerdict(True), GuardVerdict(False, ("S1", "S9"))], model=GUARD, id="modr-1")
    validate(answer, "CreateModerationResponse")
    assert [r["flagged"] for r in answer["results"]] == [False, True]


def test_guard_request_and_aliases() -> None:
    body = to_workers_guard("some text")
    assert body["messages"] == [{"role": "user", "content": "some text"}]
    assert body["response_format"] == {"type": "json_object"} and body["temperature"] == 0
    for alias in ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest",
                  "text-moderation-stable"):
        assert resolve_model(alias, DEFAULT_ALIASES) == GUARD
