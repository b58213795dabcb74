"""core.printable: what clients name (models, codes) is stored and printed without terminal tricks."""

from __future__ import annotations

import pytest

from cfai_cli.core.printable import MAX_LENGTH, printable, printable_or_none


@pytest.mark.parametrize(("raw", "shown"), [
    ("@cf/meta/llama-3.1-8b-instruct", "@cf/meta/llama-3.1-8b-instruct"),
    ("\x1b[31mred\x1b[0m", "red"),  # CSI colours
    ("\x1b[2J\x1b[Hwiped", "wiped"),  # clear screen, cursor home
    ("\x1b]0;owned title\x07model", "model"),  # OSC: window title up to BEL
    ("\x1b]8;;https://evil.test\x1b\\click\x1b]8;;\x1b\\", "click"),  # OSC 8 hyperlink up to ST
    ("a\x9b31mb", "ab"),  # C1 CSI
    ("a\x85b\x9dc", "abc"),  # other C1 controls
    ("gpt\u202e4o\u202c", "gpt4o"),  # bidi override and pop
    ("x\u2066y\u2069z\u200bw\ufeff", "xyzw"),  # isolates, zero-width space, BOM
    ("line\nbreak\r\tand\x00nul\x7f", "linebreakandnul"),
    ("café ☕ 模型", "café ☕ 模型"),  # ordinary Unicode stays
])
def test_control_characters_and_escapes_are_stripped(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_length_is_bounded() -> None:
    assert len(printable("m" * 10_000)) == MAX_LENGTH and printable("m" * 10_000).endswith("…")
    assert printable("abcdef", 4) == "abc…"
    assert printable("abcd", 4) == "abcd"
    assert printable_or_none(None) is None and printable_or_none("\x1b[1mx") == "x"
