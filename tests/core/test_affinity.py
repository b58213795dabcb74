"""core.affinity: which x-session-affinity a chat request gets, in the documented order, and the header check."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.affinity import MAX_EXPLICIT, OPENING_CHARS, check_explicit, session_affinity
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import InvalidRequest


def req(*messages: dict[str, Any], **fields: Any) -> ChatCompletionRequest:
    return validate_request(ChatCompletionRequest, {"model": "m", "messages": list(messages), **fields})


def sys(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_the_order_explicit_key_chain_user_opening() -> None:
    full = req(sys("s"), user("u"), user="alice", prompt_cache_key="k")
    assert session_affinity(full, tenant="t", explicit="mine", chain_affinity="cfai-old") == "mine"
    by_key = session_affinity(full, tenant="t", chain_affinity="cfai-old", chain_root="resp_1")
    assert by_key == session_affinity(req(user("other"), prompt_cache_key="k"), tenant="t")
    no_key = req(sys("s"), user("u"), user="alice")
    assert session_affinity(no_key, tenant="t", chain_affinity="cfai-old", chain_root="resp_1") == "cfai-old"
    by_root = session_affinity(no_key, tenant="t", chain_root="resp_1")
    assert by_root == session_affinity(req(user("x")), tenant="t", chain_root="resp_1") != by_key
    by_user = session_affinity(no_key, tenant="t")
    assert by_user == session_affinity(req(user("zzz"), user="alice"), tenant="t")
    by_opening = session_affinity(req(sys("s"), user("u")), tenant="t")
    assert len({by_key, by_root, by_user, by_opening}) == 4


def test_the_opening_is_the_system_prompt_and_first_user_turn() -> None:
    start = [sys("a"), {"role": "developer", "content": "b"}, user("c")]
    one = session_affinity(req(*start), tenant=None)
    assert one == session_affinity(req(*start, {"role": "assistant", "content": "d"}, user("e")), tenant=None)
    assert one != session_affinity(req(sys("a"), user("c")), tenant=None)  # every leading system turn counts
    assert one != session_affinity(req(*start), tenant="key_1")  # salted per tenant
    image_only = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}
    assert session_affinity(req(image_only), tenant=None) is None  # nothing to name it by


def test_long_openings_hash_their_beginning_and_length() -> None:
    base = "x" * OPENING_CHARS
    same_start = session_affinity(req(sys(base + "A")), tenant=None)
    assert same_start == session_affinity(req(sys(base + "B")), tenant=None)
    assert same_start != session_affinity(req(sys(base + "AB")), tenant=None)


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("  ", None), ("run-7", "run-7"),
                                                 (" run-7 ", "run-7"), ("x" * MAX_EXPLICIT, "x" * MAX_EXPLICIT)])
def test_explicit_values_kept(value: str | None, expected: str | None) -> None:
    assert check_explicit(value) == expected


@pytest.mark.parametrize("value", ["x" * (MAX_EXPLICIT + 1), "caf\u00e9", "a\tb"])
def test_explicit_values_refused(value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_explicit(value)
    assert caught.value.param == "x-session-affinity"
