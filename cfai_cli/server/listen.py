"""Before uvicorn starts: is the address free to listen on, and what address do other machines use?

Imports only the standard library and errors. uvicorn runs the app's start-up before it binds, so a busy
port would otherwise show "Application startup complete" and then a traceback-like log line; binding once
here first turns that into one `cfai:` line (a race with another program remains, and uvicorn still reports it).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import struct
from collections.abc import Iterable

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


def reachable_hosts(host: str) -> list[str]:
    """For a wildcard bind, the addresses other machines can use for this one: its non-loopback IP addresses,
    the one its default route leaves from first (IPv6 ones too for `::`); the hostname when none is found.
    Empty when `host` is not a wildcard (it is then the address to show)."""
    if host not in WILDCARDS:
        return []
    found = pick_addresses(_machine_addresses(), ipv6=host.strip("[]") == "::")
    return found or [socket.gethostname()]


def pick_addresses(candidates: Iterable[str], *, ipv6: bool = False) -> list[str]:
    """The usable addresses among `candidates`, in their order, once each: not loopback, link-local (they need
    an interface name), unspecified or multicast; IPv6 only when `ipv6`, shown in brackets as URLs need."""
    out: list[str] = []
    for text in candidates:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if (address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast
                or (address.version == 6 and not ipv6)):
            continue
        shown = f"[{address}]" if address.version == 6 else str(address)
        if shown not in out:
            out.append(shown)
    return out


def _machine_addresses() -> list[str]:
    """This machine's own addresses, as far as the standard library can tell without sending anything."""
    found: list[str] = []
    for family, probe in ((socket.AF_INET, "1.1.1.1"), (socket.AF_INET6, "2606:4700:4700::1111")):
        # connect() on a UDP socket only picks the route (no packet leaves): the address the default route uses.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))
            found.append(udp.getsockname()[0])
    found += _interface_addresses()
    with contextlib.suppress(OSError):
        found += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    return found


def _interface_addresses() -> list[str]:
    """Linux: each interface's IPv4 address (SIOCGIFADDR) and the global IPv6 ones (/proc/net/if_inet6)."""
    found: list[str] = []
    try:
        import fcntl
        names = [name for _, name in socket.if_nameindex()]
    except (ImportError, OSError, AttributeError):
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            with contextlib.suppress(OSError):
                answer = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
                found.append(socket.inet_ntoa(answer[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as table:
        for row in table:
            fields = row.split()
            if len(fields) >= 4 and fields[3] == "00":  # scope global
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found
