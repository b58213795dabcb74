"""SSEDecoder / encode_sse: WHATWG parsing rules, and indifference to where the bytes were split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfai_cli.core.sse import DONE, SSEDecoder, SSEEvent, encode_sse, encode_sse_all
from tests.core.helpers import fixture_bytes, splits, sse_fixtures

Triple = tuple[str, str | None, str | None]


def decode_chunks(chunks: list[bytes]) -> list[Triple]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in chunks:
        events.extend(decoder.decode(piece))
    events.extend(decoder.flush())
    return [(e.data, e.event, e.id) for e in events]


def decode_whole(data: bytes) -> list[Triple]:
    return decode_chunks([data])


def oracle(raw: bytes) -> list[str]:
    """An independent, naive reading of our fixtures (data-only events, one data line each)."""
    text = raw.decode("utf-8").replace("\r\n", "\n")
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


SSE_FILES = sse_fixtures()


def test_there_are_stream_fixtures() -> None:
    assert len(SSE_FILES) >= 10


@pytest.mark.parametrize("name", SSE_FILES)
def test_fixture_decodes_to_its_events(name: str) -> None:
    raw = fixture_bytes(name)
    events = decode_whole(raw)
    assert [data for data, _, _ in events] == oracle(raw)
    assert all(event is None and id_ is None for _, event, id_ in events)
    for data, _, _ in events:
        if data != "[DONE]":
            assert isinstance(json.loads(data), dict)


@pytest.mark.parametrize("name", SSE_FILES)
def test_fixture_split_at_every_offset(name: str) -> None:
    raw = fixture_bytes(name)
    whole = decode_whole(raw)
    for cut in range(len(raw) + 1):
        assert decode_chunks([raw[:cut], raw[cut:]]) == whole, f"split at byte {cut}"


@pytest.mark.parametrize("name", SSE_FILES)
def test_fixture_fed_byte_by_byte(name: str) -> None:
    raw = fixture_bytes(name)
    assert decode_chunks([raw[i : i + 1] for i in range(len(raw))]) == decode_whole(raw)


@pytest.mark.parametrize("name", SSE_FILES)
def test_fixture_with_empty_chunks_interleaved(name: str) -> None:
    raw = fixture_bytes(name)
    chunks = [b""]
    for i in range(0, len(raw), 7):
        chunks += [raw[i : i + 7], b""]
    assert decode_chunks(chunks) == decode_whole(raw)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(SSE_FILES), data=st.data())
def test_fixture_split_at_random_points(name: str, data: st.DataObject) -> None:
    raw = fixture_bytes(name)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=40))
    assert decode_chunks(list(splits(raw, cuts))) == decode_whole(raw)


# Hand-written wire text -> the events a WHATWG-conformant reader dispatches (data, event, id).
PARSING_CASES: list[tuple[str, bytes, list[Triple]]] = [
    ("lf", b"data: a\n\ndata: b\n\n", [("a", None, None), ("b", None, None)]),
    ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [("a", None, None), ("b", None, None)]),
    ("cr", b"data: a\r\rdata: b\r\r", [("a", None, None), ("b", None, None)]),
    ("mixed line ends", b"data: a\r\n\ndata: b\r\rdata: c\n\r\n", [("a", None, None), ("b", None, None),
                                                                   ("c", None, None)]),
    ("multi-line data", b"data: one\ndata: two\r\ndata: three\n\n", [("one\ntwo\nthree", None, None)]),
    ("empty data line", b"data\n\n", [("", None, None)]),
    ("data with empty value then text", b"data:\ndata: x\n\n", [("\nx", None, None)]),
    ("no space after colon", b"data:x\n\n", [("x", None, None)]),
    ("only one leading space is removed", b"data:  x \n\n", [(" x ", None, None)]),
    ("colon inside the value", b"data: a: b\n\n", [("a: b", None, None)]),
    ("comment lines are ignored", b": keep-alive\n\n:another\ndata: x\n: mid\n\n", [("x", None, None)]),
    ("event field", b"event: response.created\ndata: {}\n\n", [("{}", "response.created", None)]),
    ("event type resets after dispatch", b"event: e1\ndata: 1\n\ndata: 2\n\n", [("1", "e1", None),
                                                                             ("2", None, None)]),
    ("event without data is not dispatched", b"event: ping\n\ndata: x\n\n", [("x", None, None)]),
    ("id persists across events", b"id: 7\ndata: a\n\ndata: b\n\n", [("a", None, "7"), ("b", None, "7")]),
    ("id with NUL is ignored", b"id: 1\0\ndata: a\n\n", [("a", None, None)]),
    ("unknown fields and retry ignored", b"retry: 100\nfoo: bar\nfoo\ndata: x\n\n", [("x", None, None)]),
    ("field name is case-sensitive", b"Data: x\n\ndata: y\n\n", [("y", None, None)]),
    ("leading BOM", b"\xef\xbb\xbfdata: x\n\n", [("x", None, None)]),
    ("BOM later is data", b"data: \xef\xbb\xbfx\n\n", [("\ufeffx", None, None)]),
    ("blank lines between events", b"\n\n\ndata: x\n\n\n\n", [("x", None, None)]),
    ("final event without blank line", b"data: a\n\ndata: b\n", [("a", None, None), ("b", None, None)]),
    ("final line without line end", b"data: a\n\ndata: b", [("a", None, None), ("b", None, None)]),
    ("final line ends in CR", b"data: a\r", [("a", None, None)]),
    ("DONE sentinel is plain data", DONE, [("[DONE]", None, None)]),
    ("multi-byte characters", "data: 你好 👋\n\n".encode(), [("你好 👋", None, None)]),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in PARSING_CASES], ids=[c[0] for c in PARSING_CASES])
def test_parsing_rules(raw: bytes, expected: list[Triple]) -> None:
    assert decode_whole(raw) == expected
    for cut in range(len(raw) + 1):
        assert decode_chunks([raw[:cut], raw[cut:]]) == expected, f"split at byte {cut}"
    assert decode_chunks([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_events_are_dispatched_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\n") == []
    assert decoder.decode(b"\n") == [SSEEvent("a")]
    assert decoder.decode(b"data: b\r") == []
    assert decoder.decode(b"\r") == [SSEEvent("b")]
    assert decoder.flush() == []


def test_flush_dispatches_an_unterminated_event_once() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b'data: {"response":"x"}') == []
    assert decoder.flush() == [SSEEvent('{"response":"x"}')]
    assert decoder.flush() == []


def test_split_multibyte_character_is_kept_whole() -> None:
    raw = "data: 🇯🇵\n\n".encode()
    decoder = SSEDecoder()
    events = [e for i in range(len(raw)) for e in decoder.decode(raw[i : i + 1])]
    assert events == [SSEEvent("🇯🇵")]


def test_invalid_utf8_does_not_raise() -> None:
    events = decode_whole(b"data: \xff\xfe ok\n\n")
    assert len(events) == 1 and events[0][0].endswith(" ok")


# ---- encoder ---------------------------------------------------------------------------------------

ENCODE_CASES: list[tuple[str | dict[str, object], str | None, bytes]] = [
    ("[DONE]", None, b"data: [DONE]\n\n"),
    ({"a": 1, "b": "é"}, None, 'data: {"a":1,"b":"é"}\n\n'.encode()),
    ("two\nlines", None, b"data: two\ndata: lines\n\n"),
    ({"type": "response.created"}, "response.created",
     b'event: response.created\ndata: {"type":"response.created"}\n\n'),
]


@pytest.mark.parametrize(("data", "event", "wire"), ENCODE_CASES)
def test_encode_sse(data: str | dict[str, object], event: str | None, wire: bytes) -> None:
    assert encode_sse(data, event=event) == wire


def test_done_constant() -> None:
    assert decode_whole(DONE) == [("[DONE]", None, None)]


ROUND_TRIP = [
    "plain",
    "",
    "line one\nline two",
    "\n\nleading and trailing\n\n",
    "data: [DONE]",
    ": not a comment once encoded",
    "   spaces kept   ",
    "你好 👋🏽 \"quotes\" \\backslash\\",
    json.dumps({"response": "a\r\nb\n\nc", "emoji": "🙂"}),
]


@pytest.mark.parametrize("text", ROUND_TRIP)
@pytest.mark.parametrize("event", [None, "message.delta"])
def test_encode_decode_round_trip(text: str, event: str | None) -> None:
    assert decode_whole(encode_sse(text, event=event)) == [(text, event, None)]


@pytest.mark.parametrize(("text", "decoded"), [
    ("a\rb", "a\nb"),
    ("a\r\nb", "a\nb"),
    ("a\r\n\r\nb\r", "a\n\nb\n"),
])
def test_encode_carriage_returns_become_line_breaks_not_lost_data(text: str, decoded: str) -> None:
    # SSE cannot carry a CR inside data: every CR is a line end on the wire. The encoder must not let
    # the text after a CR turn into a stray field line (which a reader silently drops).
    assert decode_whole(encode_sse(text)) == [(decoded, None, None)]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_encode_decode_round_trip_property(text: str) -> None:
    wire = encode_sse(text) + encode_sse({"after": text})
    as_lines = text.replace("\r\n", "\n").replace("\r", "\n")
    assert decode_whole(wire) == [(as_lines, None, None), (json.dumps({"after": text}, ensure_ascii=False,
                                                                       separators=(",", ":")), None, None)]


_LINES = st.sampled_from(["data: a", "data:b", "data", "data:  c ", "event: e", "id: 7", "id", ": note", "", "",
                          "retry: 5", "data: é€", "bogus"])
_ENDS = st.sampled_from(["\n", "\n", "\r\n", "\r"])


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.tuples(_LINES, _ENDS), max_size=30), data=st.data())
def test_line_ends_and_splits_do_not_change_the_events(lines: list[tuple[str, str]], data: st.DataObject) -> None:
    # Pieces without a CR take the decoder's LF fast path, pieces with one the general loop: whatever mix a
    # stream's reads make, the events are the ones its LF-only twin (fed whole) gives.
    # A CR line end followed by an empty line's LF would read as one CRLF: make that empty line end in CRLF.
    fixed = [(line, "\r\n" if end == "\n" and not line and i and lines[i - 1][1] == "\r" else end)
             for i, (line, end) in enumerate(lines)]
    raw = "".join(line + end for line, end in fixed).encode()
    lf_only = "".join(line + "\n" for line, _ in lines).encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=12))
    assert decode_chunks(list(splits(raw, cuts))) == decode_whole(lf_only)


class _LineByLine(SSEDecoder):
    """The decoder with its whole-`data:`-events shortcut turned off: every chunk parsed line by line."""

    def _data_events(self, text: str) -> tuple[list[str], int] | None:
        return None


def _both_ways(chunks: list[bytes]) -> tuple[list[Triple], list[str], list[Triple]]:
    """(decode, decode_data) with the shortcut, and decode line by line, over the same chunks."""
    fast, data_only, slow = SSEDecoder(), SSEDecoder(), _LineByLine()
    events: list[SSEEvent] = []
    datas: list[str] = []
    reference: list[SSEEvent] = []
    for piece in chunks:
        events.extend(fast.decode(piece))
        datas.extend(data_only.decode_data(piece))
        reference.extend(slow.decode(piece))
    events.extend(fast.flush())
    datas.extend(event.data for event in data_only.flush())
    reference.extend(slow.flush())
    return ([(e.data, e.event, e.id) for e in events], datas, [(e.data, e.event, e.id) for e in reference])


_DATA_LINES = st.sampled_from(["data: a", "data: {\"response\":\"x\"}", "data: ", "data:  sp", "data:b", "data",
                               "event: e", "id: 7", ": note", "", "", "", "data: é€", "retry: 5"])


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(_DATA_LINES, max_size=30), bom=st.booleans(), data=st.data())
def test_whole_data_events_shortcut_gives_the_line_by_line_events(lines: list[str], bom: bool,
                                                                   data: st.DataObject) -> None:
    # Chunks of whole `data: …` events (what Workers AI sends) take the regular-expression shortcut; any
    # other line, a chunk that ends mid-event, or a held event name sends them through the line loop. Whatever
    # the mix and the cuts, the events (names, ids) and their data are the ones the line loop gives.
    raw = ("\ufeff" if bom else "").encode() + "".join(line + "\n" for line in lines).encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=8))
    events, datas, reference = _both_ways(list(splits(raw, cuts)))
    assert events == reference
    assert datas == [data for data, _, _ in reference]


@pytest.mark.parametrize(("chunks", "expected"), [
    # whole events then the start of the next one, finished by the next read
    ([b"data: a\n\ndata: b\n\nda", b"ta: c\n\n"], [("a", None, None), ("b", None, None), ("c", None, None)]),
    # an id after the events is for the events after them, not for these
    ([b"data: a\n\nid: 7\n", b"data: b\n\n"], [("a", None, None), ("b", None, "7")]),
    # an event name waiting from the previous read goes with the next event
    ([b"event: e\n", b"data: a\n\ndata: b\n\n"], [("a", "e", None), ("b", None, None)]),
    # a data line without its blank line yet, then a blank line alone
    ([b"data: a\n", b"\ndata: b\n\n"], [("a", None, None), ("b", None, None)]),
    # an empty data field is an event; extra blank lines are not
    ([b"data: \n\n\n\ndata: x\n\n"], [("", None, None), ("x", None, None)]),
])
def test_whole_data_events_at_the_edges(chunks: list[bytes], expected: list[Triple]) -> None:
    events, datas, reference = _both_ways(chunks)
    assert events == reference == expected
    assert datas == [data for data, _, _ in expected]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(), st.text() | st.integers() | st.none(), max_size=4), max_size=6))
def test_encode_sse_all_is_encode_sse_of_each(events: list[dict[str, object]]) -> None:
    assert encode_sse_all(events) == b"".join(encode_sse(event) for event in events)
    assert decode_whole(encode_sse_all(events)) == [(encode_sse(e)[6:-2].decode(), None, None) for e in events]
