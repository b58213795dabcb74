"""Before uvicorn starts: is the address free to listen on, and what address do other machines use?

Imports only the standard library and errors. uvicorn runs the app's start-up before it binds, so a busy
port would otherwise show "Application startup complete" and then a traceback-like log line; binding once
here first turns that into one `cfai:` line (a race with another program remains, and uvicorn still reports it).
"""

from __future__ import annotations

import errno
import socket

from cfai_cli.errors import ConfigError

WILDCARDS = ("0.0.0.0", "::", "[::]", "")


def check_port(host: str, port: int) -> None:
    """Bind (and release) `host`:`port` the way uvicorn will, raising ConfigError (exit 3) when it cannot."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ConfigError(f"--host {host} is not an address or name of this machine; "
                          "use e.g. --host 127.0.0.1 or --host 0.0.0.0.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn (asyncio) does: a port whose old connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(_bind_message(host, port, exc)) from None


def _bind_message(host: str, port: int, exc: OSError) -> str:
    other = port + 1 if port < 65535 else 3000
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another server is listening there); "
                f"stop it or choose another port, e.g. --port {other}.")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} (ports below 1024 need privileges); use e.g. --port 3000."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine; use e.g. --host 127.0.0.1 or --host 0.0.0.0."
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --host or --port."


def reachable_host(host: str) -> str | None:
    """For a wildcard bind, a name other machines can use for this one (its IP address when the
    hostname resolves to a non-loopback one, else the hostname); None when `host` is not a wildcard."""
    if host not in WILDCARDS:
        return None
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return name
    return name if address.startswith("127.") else address
