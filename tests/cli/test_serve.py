"""`cfai serve`: unsafe binds refused before anything listens, and one real start against the emulator."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.servers import free_port, stop_server, wait_for_health


def test_no_auth_off_loopback_is_refused(cli: Invoke) -> None:
    result = cli("serve", "--offline", "--no-auth", "--host", "0.0.0.0")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("cfai: --no-auth is only allowed on a loopback address")


def test_without_keys_the_server_does_not_start(cli: Invoke) -> None:
    result = cli("serve", "--offline")
    assert result.exit_code == 3
    assert "cfai keygen" in result.stderr
    assert "OpenAI base URL" not in result.stderr


def test_without_credentials_the_server_does_not_start(cli: Invoke) -> None:
    result = cli("serve", "--no-auth")
    assert result.exit_code == 3
    assert "CLOUDFLARE_ACCOUNT_ID" in result.stderr


def test_serve_offline_answers_over_http(cfai_home: Path) -> None:
    (cfai_home / "config.toml").write_text(
        '[upstreams.groq]\ntype = "openai"\nbase_url = "https://api.groq.com/openai/v1"\n'
        'api_key_env = "CFAI_TEST_UNSET_GROQ_KEY"\n\n'
        '[routes]\nfast = ["groq:llama-3.1-8b-instant", "@cf/meta/llama-3.1-8b-instruct-fast"]\n')
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--no-auth", "--port", str(port),
                             "--image-ttl", "0.0004", "--no-ui", "--access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        health = wait_for_health(proc, port)
        assert health == {"status": "ok", "upstreams": [{"name": "cloudflare", "state": "ok"},
                                                        {"name": "groq", "state": "unavailable"}]}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health?detail=1", timeout=5) as response:
            assert json.loads(response.read())["offline"] is True  # --no-auth: the operator's view for all
        # A websocket handshake is refused as before (Starlette's 403: no websocket route), though uvicorn's
        # websocket protocol is only imported by the first upgrade request (server/upgrade.py).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.1 403 ")
        with pytest.raises(urllib.error.HTTPError) as no_page:  # --no-ui
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ui", timeout=5)
        no_page.value.close()
        assert no_page.value.code == 404
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # the route's second target answers
            assert json.loads(response.read())["object"] == "chat.completion"
            assert response.headers["x-cfai-upstream"] == "cloudflare"
            assert response.headers["x-cfai-model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
        # --image-ttl (0.0004 h ≈ 1.4 s): a hosted image is served, then gone once it expires.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/images/generations", method="POST",
            data=json.dumps({"prompt": "a fox", "response_format": "url"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            url = json.loads(response.read())["data"][0]["url"]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "image/png"
        time.sleep(1.6)
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(url, timeout=10)
        gone.value.close()
        assert gone.value.code == 404
    finally:
        out, err = stop_server(proc, timeout=15)
    assert proc.returncode == 0
    assert "OFFLINE" in err and f"http://127.0.0.1:{port}/v1" in err
    assert "upstreams: cloudflare, groq · routes: fast" in err
    assert "groq: $CFAI_TEST_UNSET_GROQ_KEY is not set" in err
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in out  # --access-log (uvicorn's, on stdout)
    assert not re.search(r"\d\d:\d\d:\d\d POST /v1/chat", out)  # stdout is a pipe: no console line per request
    assert "Traceback" not in err + out


def test_rate_limit_holds_across_two_server_processes(cfai_home: Path, cli: Invoke) -> None:
    """Two `cfai serve` processes share one key's limit through SQLite: 8 per minute in all, not 8 each."""
    key = cli("keygen", "--rpm", "8", "--name", "shared").stdout.strip()
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_health(proc, port)

        def call(port: int) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                             headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                with error:  # it holds the answer's connection
                    return int(error.code)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(call, [ports[i % 2] for i in range(24)]))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        errs = []
        for proc in procs:
            try:
                errs.append("".join(proc.communicate(timeout=15)))
            except subprocess.TimeoutExpired:
                proc.kill()
    assert sorted(statuses) == [200] * 8 + [429] * 16
    assert not any("GET /v1/models" in both for both in errs)  # no access log unless --access-log


def test_a_busy_port_is_one_line_before_anything_starts(cli: Invoke) -> None:
    import socket

    with socket.socket() as held:  # another program already listening on the port
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cli("serve", "--offline", "--no-auth", "--port", str(port))
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("cfai: ")
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"--port {port + 1}" in result.stderr
    assert "startup" not in result.stderr.lower() and "OpenAI base URL" not in result.stderr


def test_an_address_not_of_this_machine_is_one_line(cli: Invoke) -> None:
    assert cli("keygen").exit_code == 0
    result = cli("serve", "--offline", "--host", "192.0.2.1")  # TEST-NET-1: never an address of this machine
    assert result.exit_code == 3
    assert result.stderr.startswith("cfai: --host 192.0.2.1 is not an address of this machine")


def test_the_banner_shows_the_page_and_a_reachable_address(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    import cfai_cli.server.app

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(cfai_cli.server.app, "serve", lambda settings, **kw: calls.append(kw))
    assert cli("keygen").exit_code == 0
    port = free_port()
    result = cli("serve", "--offline", "--host", "0.0.0.0", "--port", str(port))
    assert result.exit_code == 0, result.stderr
    assert calls and calls[0]["host"] == "0.0.0.0"
    from cfai_cli.server.listen import reachable_hosts

    others = reachable_hosts("0.0.0.0")
    other = others[0]
    assert other not in ("0.0.0.0", "127.0.0.1", "localhost")
    assert f"from other machines: http://{other}:{port}/v1" in result.stderr
    assert f"browser page: http://{other}:{port}/" in result.stderr
    local = cli("serve", "--offline", "--port", str(port))
    assert f"browser page: http://127.0.0.1:{port}/" in local.stderr and "other machines" not in local.stderr
    assert "browser page" not in cli("serve", "--offline", "--port", str(port), "--no-ui").stderr


def test_on_a_terminal_each_request_is_one_console_line(cfai_home: Path, cli: Invoke) -> None:
    key = cli("keygen", "--name", "laptop").stdout.strip()
    key_id = json.loads(cli("keys", "list", "--json").stdout)[0]["id"]
    port = free_port()
    master, slave = pty.openpty()  # stdout a terminal, as when a person runs `cfai serve`
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                            stdout=slave, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    os.close(slave)
    seen = b""
    try:
        wait_for_health(proc, port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            usage = json.loads(response.read())["usage"]
        deadline = time.monotonic() + 10
        while b"neurons" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
    finally:
        stop_server(proc, timeout=15)
        os.close(master)
    line = next(x for x in seen.decode().splitlines() if "POST" in x)
    tokens = rf"{usage['prompt_tokens']}\+{usage['completion_tokens']} tok"
    assert re.fullmatch(r"\d\d:\d\d:\d\d POST /v1/chat/completions 200 \d+ ms @cf/meta/llama-3.1-8b-instruct-fast "
                        rf"key=laptop {tokens} ~?[\d.]+ neurons", line)
    assert key not in seen.decode() and key_id not in seen.decode()
    assert "/health" not in seen.decode()  # probes are not requests worth a line


def test_a_wildcard_bind_names_this_machines_own_non_loopback_addresses() -> None:
    import ipaddress
    import socket

    from cfai_cli.server.listen import reachable_hosts

    assert reachable_hosts("127.0.0.1") == [] and reachable_hosts("192.168.1.10") == []
    found = reachable_hosts("0.0.0.0")
    addresses = []
    for text in found:
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:  # no address found: the hostname, as the last resort
            assert found == [socket.gethostname()]
    for address in addresses:
        assert address.version == 4 and not address.is_loopback and not address.is_link_local
        with socket.socket() as probe:  # an address of this machine: it can listen there
            probe.bind((str(address), 0))
    routes = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                            check=False).stdout if shutil.which("ip") else ""
    own = {line.split()[3].split("/")[0] for line in routes.splitlines()}
    assert own <= {str(a) for a in addresses}  # every global IPv4 address `ip` lists (where it exists)
    six = reachable_hosts("::")
    assert set(found) <= set(six) and all(h.startswith("[") for h in six if h not in found)


@pytest.mark.parametrize(("candidates", "ipv6", "expected"), [
    (["127.0.0.1", "10.0.0.5", "10.0.0.5", "169.254.3.3", "0.0.0.0"], False, ["10.0.0.5"]),
    (["fd00::2", "::1", "fe80::1%eth0", "192.0.2.2", "224.0.0.1", "host"], False, ["192.0.2.2"]),
    (["fd00::2", "::1", "fe80::1%eth0", "192.0.2.2"], True, ["[fd00::2]", "192.0.2.2"]),
])
def test_only_addresses_others_can_reach_are_picked(candidates: list[str], ipv6: bool, expected: list[str]) -> None:
    from cfai_cli.server.listen import pick_addresses

    assert pick_addresses(candidates, ipv6=ipv6) == expected
