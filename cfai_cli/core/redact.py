"""Secrets never leave: every configured token, key and account id masked in text and bytes.

Pure: standard library only. An upstream may echo what it was sent (the Authorization header, the account
id in the URL) into an error message or a stream event; the router, the proxy's answers, /health and the
log all pass their text through one `Scrubber` built from every secret in the settings.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"
# Shorter values are placeholders ("offline", "x", "ollama"): masking them would mangle ordinary words.
MIN_SECRET = 8


class Scrubber:
    """Masks each secret (longest first, so one that contains another is masked whole)."""

    __slots__ = ("_bytes", "secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {s.strip() for s in secrets if s and len(s.strip()) >= MIN_SECRET}
        self.secrets: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))
        self._bytes = tuple(s.encode("utf-8") for s in self.secrets)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        """Bytes of an answer already on its way: each secret becomes as many '*', so a Content-Length
        sent before the body stays true."""
        for secret in self._bytes:
            if secret in data:
                data = data.replace(secret, b"*" * len(secret))
        return data

    def merged(self, other: Scrubber) -> Scrubber:
        return Scrubber((*self.secrets, *other.secrets))
