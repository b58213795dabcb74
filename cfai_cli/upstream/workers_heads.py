"""A Workers AI client's request headers (upstream.workers): as header lines for the heads the lean transport sends
(upstream.http11.Heads), and as httpx.Headers for the calls httpx builds (made on first use, so a one-shot that
only sends bytes never imports httpx: upstream.httperrors).

Parsed once per client: building httpx.Request from a str URL and a dict was ~28 µs a request, from these ~10;
and the headers of each recent x-session-affinity are kept, since a conversation's turns reuse them (copying and
setting one header was ~5 µs a request). Imports upstream.http11 and the standard library (httpx on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfai_cli.upstream.http11 import header_block, header_pairs

if TYPE_CHECKING:
    import httpx

Lines = list[tuple[bytes, bytes]]
_KEPT = 1024  # affinity ids come from clients' conversations, model names from their requests: bounded caches


class ClientHeaders:
    """The Authorization, User-Agent and Accept headers of one client, with Content-Type for JSON calls."""

    __slots__ = ("_affine", "_hx", "_plain", "_urls", "block", "lines")

    def __init__(self, api_token: str, user_agent: str) -> None:
        self._plain = {"Authorization": f"Bearer {api_token}", "User-Agent": user_agent, "Accept": "*/*"}
        self.lines: Lines = header_pairs({**self._plain, "Content-Type": "application/json"})  # httpx.Headers' .raw
        self.block = header_block(self.lines)
        self._affine: dict[str, tuple[Lines, bytes]] = {}  # affinity id -> (its JSON lines, their block)
        self._hx: dict[str, httpx.Headers] = {}  # httpx.Headers made so far, by name or " " and an affinity id
        self._urls: dict[str, httpx.URL] = {}

    def block_for(self, affinity: str | None) -> bytes:
        """A JSON call's header lines as one block, with `x-session-affinity` when given."""
        return self.block if affinity is None else (self._affine.get(affinity) or self._with_affinity(affinity))[1]

    def plain(self) -> httpx.Headers:
        """Multipart (httpx writes its Content-Type) and GET calls' headers."""
        return self._httpx("plain", header_pairs(self._plain))

    def json(self, affinity: str | None = None) -> httpx.Headers:
        """A JSON call's headers for httpx's Request, with `x-session-affinity` when given."""
        if affinity is None:
            return self._httpx("json", self.lines)
        return self._httpx(" " + affinity, (self._affine.get(affinity) or self._with_affinity(affinity))[0])

    def url(self, url: str) -> httpx.URL:
        """`url` parsed by httpx, once."""
        parsed = self._urls.get(url)
        if parsed is None:
            import httpx

            if len(self._urls) >= _KEPT // 2:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _httpx(self, key: str, lines: Lines) -> httpx.Headers:
        found = self._hx.get(key)
        if found is None:
            import httpx

            if len(self._hx) >= _KEPT:
                self._hx.clear()
            found = self._hx[key] = httpx.Headers(lines)
        return found

    def _with_affinity(self, affinity: str) -> tuple[Lines, bytes]:
        """The JSON lines with `x-session-affinity` last, as httpx.Headers' `headers[name] = value` adds it (the value
        UTF-8), and their block."""
        if len(self._affine) >= _KEPT:
            self._affine.clear()
        lines = [*self.lines, (b"x-session-affinity", affinity.encode("utf-8"))]
        found = self._affine[affinity] = (lines, header_block(lines))
        return found
