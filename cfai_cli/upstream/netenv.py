"""What the environment says about the network, read as httpx reads it: whether a proxy is configured, and which
certificates an https connection trusts (SSL_CERT_FILE, SSL_CERT_DIR, else certifi's bundle).

upstream.lean and upstream.transport both decide by these: the lean client does not speak to proxies, so a
configured one sends every call through httpx's transport, and both verify against the same trust store.
Imports the standard library only (urllib.request and certifi when they are needed, not at import).
"""

from __future__ import annotations

import os
import ssl
import sys


def proxies_configured() -> bool:
    """True if httpx would send requests through a proxy (HTTP(S)_PROXY / ALL_PROXY in any case, or the OS's)."""
    if sys.platform not in ("darwin", "win32") and not any(name[-6:].lower() == "_proxy" for name in os.environ):
        # What urllib.request.getproxies() reads here (the environment only), without importing it (~60 M
        # instructions with http.client and the email package, for a one-shot that has no proxy).
        return False
    from urllib.request import getproxies

    proxies = getproxies()
    if "*" in (host.strip() for host in proxies.get("no", "").split(",")):
        return False
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


_default_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """What httpx verifies with by default: SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's CA bundle."""
    global _default_context
    if _default_context is None:
        if os.environ.get("SSL_CERT_FILE"):
            context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        elif os.environ.get("SSL_CERT_DIR"):
            context = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
        else:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        context.set_alpn_protocols(["http/1.1"])
        _default_context = context
    return _default_context
