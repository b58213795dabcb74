"""The Cloudflare v4 envelope: unwrapping results, and mapping every failure onto cfai's error tree."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cfai_cli.core.workers.envelope import (
    clean_message,
    decode_json_result,
    first_error,
    is_retryable,
    map_error,
)
from cfai_cli.errors import (
    CfaiError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
)
from tests.core.helpers import fixture_bytes, fixture_json

UUID = "a1b2c3d4-e5f6-4789-8abc-def012345678"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    fixture: str
    status: int
    error: type[CfaiError]
    http_status: int
    openai_type: str
    openai_code: str | None
    upstream_code: int | str | None
    says: str  # the cleaned Cloudflare message that must reach the user
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None
    param: str | None = None


ERROR_CASES = [
    Case("error_5006_bad_input.json", 400, InvalidRequest, 400, "invalid_request_error", None, 5006,
         "Bad input: Error: required properties at '/' are 'prompt'"),
    Case("error_5007_no_such_model.json", 400, ModelNotFound, 404, "invalid_request_error", "model_not_found", 5007,
         "No such model: No such model @cf/meta/llama-9-nonexistent or task", param="model"),
    Case("error_10000_auth.json", 401, UpstreamAuthError, 502, "api_error", "upstream_auth_error", 10000,
         "Authentication error"),
    Case("error_10000_auth.json", 403, UpstreamAuthError, 502, "api_error", "upstream_auth_error", 10000,
         "Authentication error"),
    Case("error_3040_capacity.json", 429, RateLimited, 429, "rate_limit_error", "rate_limit_exceeded", 3040,
         "Capacity temporarily exceeded, please try again.", headers=(("retry-after", "2"),), retry_after=2.0),
    Case("error_3040_capacity.json", 429, RateLimited, 429, "rate_limit_error", "rate_limit_exceeded", 3040,
         "Capacity temporarily exceeded", headers=(("Retry-After", "1.5"),), retry_after=1.5),
    Case("error_4006_daily_quota.json", 429, QuotaExceeded, 429, "insufficient_quota", "insufficient_quota", 4006,
         "you have used up your daily free allocation of 10,000 neurons", headers=(("retry-after", "3600"),),
         retry_after=3600.0),
    Case("error_3036_account_limited.json", 429, QuotaExceeded, 429, "insufficient_quota", "insufficient_quota",
         3036, "Account limited"),
    Case("error_3046_timeout.json", 408, UpstreamTimeout, 504, "api_error", "timeout", 3046, "Request timeout"),
    Case("error_5035_paid_only.json", 403, PermissionDenied, 403, "permission_error", "permission_denied", 5035,
         "This model requires the Workers Paid plan"),
    Case("error_500_internal.json", 500, UpstreamError, 502, "api_error", "upstream_error", None,
         "Internal server error"),
    Case("error_openai_invalid_prompt.json", 400, InvalidRequest, 400, "invalid_request_error", None,
         "invalid_prompt", "Invalid prompt: prompt is empty"),
    Case("error_success_false_http200.json", 200, InvalidRequest, 400, "invalid_request_error", None, 3030,
         "Sequence too long: 9003 > 8192"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: f"{c.fixture}-{c.status}")
def test_error_envelopes(case: Case) -> None:
    with pytest.raises(CfaiError) as info:
        decode_json_result(case.status, JSON, fixture_bytes(case.fixture), dict(case.headers),
                           model="@cf/meta/llama-9-nonexistent")
    err = info.value
    assert type(err) is case.error
    assert err.status == case.http_status
    body = err.to_openai()["error"]
    assert body["type"] == case.openai_type
    assert body["code"] == case.openai_code
    assert body["param"] == case.param
    assert err.upstream_code == case.upstream_code
    assert err.retry_after == case.retry_after
    # Cloudflare's code and its message (cleaned) are what the user sees ...
    if case.upstream_code is not None:
        assert str(case.upstream_code) in err.message
    assert case.says in err.message
    # ... without the noise: no "AiError:" prefixes, no request uuid.
    assert "AiError" not in err.message
    assert UUID not in err.message


@pytest.mark.parametrize("content_type", [JSON, "text/plain", ""])
def test_error_detection_does_not_depend_on_content_type(content_type: str) -> None:
    with pytest.raises(QuotaExceeded):
        decode_json_result(429, content_type, fixture_bytes("error_4006_daily_quota.json"), {})


def test_model_not_found_names_the_model() -> None:
    with pytest.raises(ModelNotFound) as info:
        decode_json_result(400, JSON, fixture_bytes("error_5007_no_such_model.json"), {}, model="@cf/x/y")
    assert "'@cf/x/y'" in info.value.message


# ---- successful envelopes ----------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", [
    "native_text.json", "native_text_cached.json", "native_tool_calls_flat.json", "llama4_scout_tool_calls.json",
    "llama4_scout_tool_calls_string_args.json", "native_json_mode.json", "native_think_inline.json",
    "glm_chat_completion_tools.json", "qwen3_chat_completion_reasoning.json", "qwen3_text_completion.json",
    "gpt_oss_responses.json", "gpt_oss_stream_json.json",
])
def test_success_envelope_unwraps_result(fixture: str) -> None:
    result = decode_json_result(200, JSON, fixture_bytes(fixture), {})
    assert result == fixture_json(fixture)["result"]


def test_bare_object_without_envelope_is_accepted() -> None:
    assert decode_json_result(200, JSON, b'{"response":"hi"}', {}) == {"response": "hi"}


@pytest.mark.parametrize(("status", "body"), [
    (200, b"not json"),
    (200, b"[1, 2]"),
    (200, b'"result"'),
    (200, b""),
])
def test_unusable_success_bodies_are_upstream_errors(status: int, body: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        decode_json_result(status, JSON, body, {})
    assert type(info.value) is UpstreamError


# ---- HTML and other non-JSON failures --------------------------------------------------------------

HTML_502 = fixture_bytes("error_502.html")
XHTML = (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
         b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html><head><title>503</title>'
         b'<script>var secret_token="do-not-leak"</script></head><body>Service Unavailable</body></html>')


@pytest.mark.parametrize(("status", "content_type", "body", "error"), [
    (502, "text/html; charset=UTF-8", HTML_502, UpstreamError),
    (502, "", HTML_502, UpstreamError),
    (502, JSON, HTML_502, UpstreamError),
    (502, "", b"\r\n  " + HTML_502.replace(b"<!DOCTYPE html>", b"<!doctype HTML>"), UpstreamError),
    (502, "", b"\xef\xbb\xbf" + HTML_502, UpstreamError),
    (503, "text/xml", XHTML, UpstreamError),
    (429, "text/html", HTML_502, RateLimited),
    (401, "text/html", HTML_502, UpstreamAuthError),
    (504, "text/html", HTML_502, UpstreamTimeout),
    (413, "text/html", HTML_502, RequestTooLarge),
    (200, "text/html", HTML_502, UpstreamError),
])
def test_html_pages_never_leak_into_messages(status: int, content_type: str, body: bytes,
                                             error: type[CfaiError]) -> None:
    with pytest.raises(CfaiError) as info:
        decode_json_result(status, content_type, body, {})
    err = info.value
    assert type(err) is error
    assert str(status) in err.message
    for leak in ("<", "secret_token", "do-not-leak", "Ray ID", "203.0.113.7", "DOCTYPE", "xml"):
        assert leak not in err.message, leak


def test_plain_text_error_body_is_quoted() -> None:
    with pytest.raises(UpstreamError) as info:
        decode_json_result(503, "text/plain", b"upstream connect error or disconnect/reset before headers", {})
    assert "upstream connect error" in info.value.message
    assert "503" in info.value.message


# ---- map_error / is_retryable / helpers ------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "retryable"), [
    (429, 3040, True),
    (429, "3040", True),
    (200, 3040, True),  # capacity reported on a success status
    (429, 4006, False),  # daily quota: only clears at 00:00 UTC
    (429, "4006", False),
    (429, 3036, False),
    (500, None, True),
    (502, None, True),
    (503, 7009, True),
    (400, 5006, False),
    (400, None, False),
    (400, 5007, False),
    (401, 10000, False),
    (403, 5035, False),
    (413, 3006, False),
])
def test_is_retryable(status: int, code: int | str | None, retryable: bool) -> None:
    assert is_retryable(map_error(status, code, "AiError: AiError: something (" + UUID + ")")) is retryable


@pytest.mark.parametrize(("status", "code", "error"), [
    (400, 3042, ModelNotFound),
    (404, 3042, ModelNotFound),
    (400, None, InvalidRequest),
    (413, 3006, RequestTooLarge),
    (200, 3006, RequestTooLarge),
    (408, 3007, UpstreamTimeout),
    (504, None, UpstreamTimeout),
    (403, 5016, PermissionDenied),
    (403, 3023, PermissionDenied),
    (405, 5005, InvalidRequest),
    (422, 5012, InvalidRequest),
    (404, 7003, InvalidRequest),
    (500, None, UpstreamError),
    (200, None, UpstreamError),
    (401, None, UpstreamAuthError),
    (403, 10000, UpstreamAuthError),
])
def test_map_error_by_status_and_code(status: int, code: int | None, error: type[CfaiError]) -> None:
    assert type(map_error(status, code, "msg")) is error


def test_no_such_model_without_a_code_is_recognised() -> None:
    err = map_error(400, None, "AiError: No such model: No such model @cf/a/b or task (" + UUID + ")", model="@cf/a/b")
    assert isinstance(err, ModelNotFound)


@pytest.mark.parametrize(("body", "expected"), [
    ({"errors": [{"code": 5006, "message": "m"}]}, (5006, "m")),
    ({"errors": [{"code": "3040", "message": "m"}]}, (3040, "m")),
    ({"errors": [{"code": "E_ODD", "message": "m"}]}, ("E_ODD", "m")),
    ({"errors": [{"message": "m"}]}, (None, "m")),
    ({"errors": [], "success": False}, (None, "unknown error")),
    ({"error": {"code": "invalid_prompt", "message": "m"}}, ("invalid_prompt", "m")),
    ({"error": {"code": 400, "message": "m"}}, (400, "m")),
    ({"error": "plain"}, (None, "plain")),
    ({}, (None, "unknown error")),
])
def test_first_error(body: dict[str, object], expected: tuple[object, str]) -> None:
    assert first_error(body) == expected


@pytest.mark.parametrize(("raw", "clean"), [
    (f"AiError: AiError: Request timeout ({UUID})", "Request timeout"),
    (f"AiError: Bad input: Error: x ({UUID})", "Bad input: Error: x"),
    ("Authentication error", "Authentication error"),
    ("Capacity temporarily exceeded, please try again.", "Capacity temporarily exceeded, please try again."),
    ("  AiError: spaced (0123abcd)  ", "spaced"),
    ("keeps (parenthesised words)", "keeps (parenthesised words)"),
])
def test_clean_message(raw: str, clean: str) -> None:
    assert clean_message(raw) == clean


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"retry-after": "5"}, 5.0),
    ({"Retry-After": "5"}, 5.0),
    ({"retry-after": "0"}, 0.0),
    ({"retry-after": "-1"}, None),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ({"retry-after": "soon"}, None),
])
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    with pytest.raises(RateLimited) as info:
        decode_json_result(429, JSON, fixture_bytes("error_3040_capacity.json"), headers)
    assert info.value.retry_after == expected


@pytest.mark.parametrize("body", [HTML_502, b"404 page not found"])
def test_a_404_without_an_envelope_is_the_upstreams_failure(body: bytes) -> None:
    # e.g. a wrong CFAI_API_BASE: not the client's mistake, so not a 4xx for the client.
    with pytest.raises(CfaiError) as info:
        decode_json_result(404, "text/html" if body.startswith(b"<") else "text/plain", body, {})
    assert type(info.value) is UpstreamError and info.value.status == 502
