"""core.workers.image_cut: an image answer's base64 is taken from the bytes, the rest parsed, and every
answer it cannot vouch for is decoded whole, as before."""

from __future__ import annotations

import base64
import json

import pytest

from cfai_cli.core.workers.envelope import decode_binary_result
from cfai_cli.core.workers.image_cut import canonical_base64, cut_image, decode_image_result
from cfai_cli.errors import InvalidRequest, UpstreamError

IMAGE = base64.b64encode(bytes(range(256)) * 40 + b"\x01").decode()  # padded: ends in "="
JSON = "application/json"


def envelope(result: object, **extra: object) -> bytes:
    return json.dumps({"result": result, "success": True, "errors": [], "messages": [], **extra}).encode()


def decode(body: bytes, status: int = 200) -> tuple[bytes | None, str, object, str | None]:
    """decode_image_result with its image (a view of `body`, also result.image) as text, for comparing."""
    raw, kind, result, image = decode_image_result(status, JSON, body, {})
    if image is None:
        return raw, kind, result, None
    assert isinstance(image, memoryview) and image.obj is body  # not copied out of the answer
    assert isinstance(result, dict) and result["image"] is image
    return raw, kind, {**result, "image": str(image, "ascii")}, str(image, "ascii")


@pytest.mark.parametrize("body", [
    envelope({"image": IMAGE}),
    envelope({"image": IMAGE}).replace(b'"image": ', b'"image"  :\n\t '),
    json.dumps({"success": True, "result": {"seed": 7, "image": IMAGE}}, separators=(",", ":")).encode(),
    envelope({"image": IMAGE}, messages=[{"text": 'an "image" of a fox'}]),
])
def test_a_canonical_image_is_cut_out_and_the_rest_decoded_as_before(body: bytes) -> None:
    raw, kind, result, image = decode(body)
    assert image == IMAGE
    assert (raw, kind, result) == decode_binary_result(200, JSON, body, {})


@pytest.mark.parametrize("body", [
    envelope({"image": IMAGE[:-1]}),                               # not a multiple of 4
    envelope({"image": IMAGE.replace("+", "-")}),                  # URL-safe alphabet
    envelope({"image": IMAGE[:40] + "\n" + IMAGE[40:-1]}),         # a newline (JSON-escaped)
    envelope({"image": "data:image/jpeg;base64," + IMAGE}),        # a data: URL: judged whole
    envelope({"image": ""}),
    envelope({"thumbnail": {"image": "QUJD"}, "image": IMAGE}),    # the first "image" is not result.image
    b'{"result": {"image": "QUJD", "image": "QUJE"}}',              # twice: JSON parsers keep the last
    envelope({"other": {"image": IMAGE}}),                         # no result.image at all
    envelope({"image": None}),
    envelope({"image": IMAGE}) + b"garbage",                       # not JSON once whole: an error, as before
    envelope({"image": "\u0000cfai image\u0000"}),                 # the sentinel itself, sent by the upstream
])
def test_anything_else_is_decoded_whole(body: bytes) -> None:
    try:
        expected: object = decode_binary_result(200, JSON, body, {})
    except UpstreamError as exc:
        with pytest.raises(UpstreamError, match=exc.message[:30]):
            decode(body)
        return
    raw, kind, result, image = decode(body)
    assert image is None
    assert (raw, kind, result) == expected


def test_a_failure_in_the_envelope_is_still_raised() -> None:
    body = json.dumps({"result": {"image": IMAGE}, "success": False,
                       "errors": [{"code": 5006, "message": "bad input: prompt"}]}).encode()
    with pytest.raises(InvalidRequest):
        decode(body)
    with pytest.raises(InvalidRequest):
        decode(body, status=400)


def test_raw_bytes_stay_bytes() -> None:
    assert decode_image_result(200, "image/png", b"\x89PNG....", {}) == (b"\x89PNG....", "image/png", None, None)


def test_cut_leaves_a_sentinel_and_the_text() -> None:
    body = envelope({"image": IMAGE})
    cut = cut_image(body)
    assert cut is not None
    rest, text = cut
    assert text == IMAGE.encode()
    assert json.loads(rest)["result"]["image"] == "\u0000cfai image\u0000"
    assert cut_image(b'{"image" "AAAA"}') is None and cut_image(b'{"image": AAAA}') is None
    assert cut_image(b'{"image": "AAAA') is None and cut_image(b'{"result": 1}') is None


@pytest.mark.parametrize(("text", "ok"), [
    (b"QUJD", True), (b"QUI=", True), (b"QQ==", True), (b"Q===", False), (b"QUJD====", False), (b"QU=D", False),
    (b"QUJ", False), (b"", False), (b"QU J", False), (b"QU-_", False), (b"QUJ\xc3", False),
])
def test_canonical_base64(text: bytes, ok: bool) -> None:
    assert canonical_base64(text) is ok
    assert canonical_base64(memoryview(text)) is ok  # as image_cut checks the text, in place


def test_a_long_text_is_checked_to_its_end_in_pieces() -> None:
    text = base64.b64encode(bytes(range(256)) * 1800) + b"QQ=="  # ~600 KB: several pieces of a memoryview
    assert canonical_base64(memoryview(text)) and len(text) > 4 * 64 * 1024
    for bad in (len(text) - 3, 64 * 1024, 64 * 1024 - 1, 200_001):
        spoiled = bytearray(text)
        spoiled[bad] = ord("-")
        assert not canonical_base64(memoryview(spoiled)) and not canonical_base64(bytes(spoiled))
