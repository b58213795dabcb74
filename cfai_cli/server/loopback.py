"""Who may reach a proxy running without keys (`cfai serve --no-auth`, loopback only): this machine's own
clients, never a web page.

Imports errors only; a piece of the app's one layer (server.front), used only when auth is off. Binding to
127.0.0.1 is not enough on its own:
- DNS rebinding: a page on evil.example re-points its name to 127.0.0.1, and the browser then sends the
  page's requests to the proxy with `Host: evil.example`. Only loopback names pass: `localhost`, 127.0.0.0/8
  and `[::1]`, with any port.
- cross-site requests: any page may post a form, text/plain or multipart body to http://127.0.0.1:3000
  without a CORS preflight. Browsers say where such a request comes from (`Origin`); one from a page that
  is neither on a loopback host nor in `cors_origins` is refused. Requests without `Origin` (curl, SDKs)
  are not browser cross-site requests and pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from cfai_cli.errors import PermissionDenied


def loopback_name(host: str) -> bool:
    """`localhost`, an address in 127.0.0.0/8 or `::1` (brackets already removed), in any letter case."""
    host = host.lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback


def host_is_loopback(value: str) -> bool:
    """A `Host` header naming a loopback host: `localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`."""
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
        ok_rest = not rest or (rest.startswith(":") and (port.isdigit() or not port))
        return bool(bracket) and ok_rest and ":" in inside and loopback_name(inside)
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return False
    return ":" not in name and loopback_name(name)


class LoopbackOnly:
    """The two checks, for server.front's layer: `refusal` of a request's (or a websocket's) headers, None when
    they pass."""

    def __init__(self, *, origins: Iterable[str] = ()) -> None:
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> PermissionDenied | None:
        host = origin = None
        hosts = 0
        for name, value in headers:
            if name == b"host":
                hosts += 1
                host = value.decode("latin-1").strip()
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1").strip()
        if host is None or hosts > 1 or not host_is_loopback(host):  # two Host headers: which one is true?
            shown = repr(host[:100]) if host is not None else "no Host header"
            return PermissionDenied(
                f"This proxy runs without keys (--no-auth), so it answers only requests addressed to a loopback "
                f"name (localhost, 127.0.0.1, [::1]), not {shown}: a web page must not reach it through DNS "
                "rebinding. Use http://127.0.0.1:PORT, or run with keys to serve other names.",
                code="host_not_allowed")
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            try:
                page = urlsplit(origin)
                from_loopback = page.scheme in ("http", "https") and loopback_name(page.hostname or "")
            except ValueError:
                from_loopback = False
            if not from_loopback:
                return PermissionDenied(
                    f"This proxy runs without keys (--no-auth), so web pages from other sites may not call it "
                    f"(Origin {origin[:100]!r}). Allow a page with --cors-origin, or run with keys.",
                    code="origin_not_allowed")
        return None
