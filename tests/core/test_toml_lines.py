"""core.toml_lines: which line of a config file holds a key (tomllib keeps no positions)."""

from __future__ import annotations

import tomllib

import pytest

from cfai_cli.core.toml_lines import line_of, split_key

TEXT = """\
# my settings
timeout = 30   # seconds
aliases.quick = "@cf/meta/llama-3.1-8b-instruct-fast"

[upstreams.groq]
type = "openai"
api_kye = "k"        # the typo

[upstreams."my.box"]
"base url" = "http://x"

[routes]
"my fast" = ["a", "b"]

[[items]]
name = "x"
"""


@pytest.mark.parametrize(("path", "line"), [
    (("timeout",), 2),
    (("aliases", "quick"), 3),
    (("upstreams", "groq", "api_kye"), 7),
    (("upstreams", "groq", "api_key"), 5),  # a key that is missing: its table
    (("upstreams", "my.box", "base url"), 10),
    (("routes", "my fast"), 13),
    (("items", "name"), 16),
    (("cache", "enabled"), None),
    (("timeout", "deeper"), 2),
])
def test_line_of(path: tuple[str, ...], line: int | None) -> None:
    tomllib.loads(TEXT)  # the text is real TOML
    assert line_of(TEXT, path) == line


def test_split_key() -> None:
    assert split_key('a."b.c".d') == ("a", "b.c", "d")
    assert split_key("a . 'x y'") == ("a", "x y")
    assert split_key("a b") is None
    assert split_key("") is None
