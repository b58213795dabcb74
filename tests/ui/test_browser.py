"""The browser page, end to end in headless Chromium against `cfai serve --offline`: the catalogue renders and
filters; the usage view's figures equal the usage log (`cfai usage --json`) per model and per key, by name, for
each period, with the free-allocation gauge `cfai usage` prints; the Keys view creates, rotates, edits and revokes
a key whose secret really works (and then really does not); a key without the admin scope sees neither view.
Screenshots (1280x800 and 400 px wide) go to .artifacts/.

One server and one browser for the module. Chromium is Debian's package (`.ci/run` installs it); Playwright drives
it with `executable_path`, so no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, wait_for_health

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CFAI_TEST_ARTIFACTS", ROOT / ".artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")

GLM = "@cf/zai-org/glm-4.7-flash"
LLAMA = "@cf/meta/llama-3.1-8b-instruct-fast"  # what gpt-4o-mini names


@dataclass
class Server:
    base: str
    admin: str  # a key with every scope
    env: dict[str, str]

    def cli(self, *args: str) -> str:
        """`cfai ARGS` in this process (Typer's runner) on the server's data directory: its stdout."""
        from typer.testing import CliRunner

        from cfai_cli.cli.app import app

        result = CliRunner().invoke(app, list(args), env={"CFAI_HOME": self.env["CFAI_HOME"]})
        assert result.exit_code == 0, result.stderr
        return result.stdout.strip()

    def usage(self, by: str, since: str = "24h") -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.cli("usage", "--since", since, "--by", by, "--json"))
        return answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CFAI_"))}
    env["CFAI_HOME"] = str(tmp_path_factory.mktemp("cfai-ui-home"))
    port = free_port()
    admin = Server("", "", env).cli("keygen", "--name", "root", "--scopes", "all")
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_health(proc, port)
    try:
        yield Server(f"http://127.0.0.1:{port}", admin, env)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)  # reaps it and closes its stderr pipe


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    yield tab
    context.close()
    # A refused request logs a console error of its own (the tests make some on purpose); nothing else may.
    assert [p for p in problems if "status of 4" not in p] == []


def status_of(server: Server, key: str, model: str = GLM) -> int:
    request = urllib.request.Request(server.base + "/v1/chat/completions", method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        refused.close()
        return int(refused.code)


def sign_in(page: Any, server: Server, key: str) -> None:
    page.goto(server.base + "/ui")
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#models tbody tr.model")


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert (ARTIFACTS / name).stat().st_size > 5_000


def number(text: str) -> float:
    return float(text.lstrip("~$").replace(",", ""))


def table(page: Any) -> dict[str, list[str]]:
    """The usage table's rows by their series label: requests, errors, tokens, neurons, cost."""
    rows = page.locator("#series tbody tr").all_inner_texts()
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in (r.split("\t") for r in rows)}


def test_model_browser(page: Any, server: Server) -> None:
    with urllib.request.urlopen(server.base + "/ui", timeout=10) as response:
        html = response.read().decode()
        csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and '<script src="/ui/app.js"' in html and server.admin not in html
    sign_in(page, server, server.admin)
    total = page.locator("#models tbody tr.model").count()
    assert total >= 30 and f"{total} of {total} models" == page.inner_text("#count")
    page.fill("#search", "llama")
    names = page.locator("#models tbody tr.model td:first-child").all_inner_texts()
    assert names and len(names) < total and all("llama" in n for n in names)
    page.fill("#search", "")
    page.select_option("#task", "Text Embeddings")
    tasks = page.locator("#models tbody tr.model td:nth-child(2)").all_inner_texts()
    assert tasks and set(tasks) == {"Text Embeddings"}
    page.select_option("#task", "")
    page.check("#f-vision")
    vision = page.locator("#models tbody tr.model td:first-child").all_inner_texts()
    assert "@cf/meta/llama-4-scout-17b-16e-instruct" in vision and "@cf/baai/bge-base-en-v1.5" not in vision
    page.focus("#models tbody tr.model >> nth=0")
    page.keyboard.press("Enter")  # the keyboard opens a snippet too
    assert "/v1/chat/completions" in page.inner_text("#snippet-curl") and server.admin not in page.content()
    shoot(page, "ui-models.png")


def test_usage_view_shows_what_the_usage_log_holds(page: Any, server: Server) -> None:
    alice = server.cli("keygen", "--name", "alice")
    bob = server.cli("keygen", "--name", "bob")
    for key, model, times in ((alice, GLM, 2), (bob, "gpt-4o-mini", 3), (alice, "gpt-4o-mini", 1)):
        for _ in range(times):
            assert status_of(server, key, model) == 200
    sign_in(page, server, server.admin)
    page.click("#tab-usage")
    page.wait_for_selector('#usage-view[data-loaded="24h model"]')
    shown = table(page)
    logged = {g["group"]: g for g in server.usage("model")["groups"]}
    assert {GLM, LLAMA} <= set(shown)
    for model, requests in ((GLM, 2), (LLAMA, 4)):
        requests_text, _, _, neurons_text, cost_text = shown[model]
        assert int(requests_text) == logged[model]["requests"] >= requests  # other tests may have called too
        assert number(neurons_text) == pytest.approx(logged[model]["neurons"], abs=0.051) and number(neurons_text) > 0
        assert number(cost_text) == pytest.approx(logged[model]["cost_usd"], abs=0.00005)
        assert neurons_text.startswith("~") == (logged[model]["estimated_neurons"] > 0)  # `~`: estimates in it
    assert page.locator(f'#chart rect.bar[data-series="{GLM}"]').count() >= 1
    assert "Neurons per hour" in page.inner_text("#chart-caption")
    # The gauge: the very line `cfai usage` prints for the account (the minutes to the reset may tick on).
    accounts = server.usage("model")["accounts"]
    gauge = page.inner_text("#gauges .gauge-line")
    assert len(accounts) == 1 and accounts[0]["neurons"] > 0
    expected = f"{accounts[0]['account']}: {accounts[0]['line']}"
    assert gauge.split(", resets in")[0] == expected.split(", resets in")[0]
    assert re.fullmatch(r"cloudflare: today: [\d,]+ of 10,000 free neurons used \(\d+ %\), resets in \d+ h \d+ m",
                        gauge)
    shoot(page, "ui-usage.png")

    page.check("input[name=by][value=key]")  # keys by name, the figures the log has for them
    page.wait_for_selector('#usage-view[data-loaded="24h key"]')
    by_key = table(page)
    logged_keys = {g["name"]: g for g in server.usage("key")["groups"]}
    for name, requests in (("alice", 3), ("bob", 3)):
        assert int(by_key[name][0]) == logged_keys[name]["requests"] == requests
        assert number(by_key[name][3]) == pytest.approx(logged_keys[name]["neurons"], abs=0.051)
    assert "root" in by_key  # the admin key's own calls (the page's), by its name too

    page.check("input[name=period][value='7d']")  # day buckets; the same calls
    page.wait_for_selector('#usage-view[data-loaded="7d key"]')
    assert "per day" in page.inner_text("#chart-caption") and "last 7 days" in page.inner_text("#chart-caption")
    assert int(table(page)["bob"][0]) == 3
    page.check("input[name=measure][value=cost_usd]")  # the toggle redraws the same answer in dollars
    assert page.inner_text("#chart-caption").startswith("Cost in US$ (list price) per day")
    assert all(t.startswith("$") for t in page.locator("#chart text.axis").all_text_contents()[:3])
    page.set_viewport_size({"width": 400, "height": 800})
    shoot(page, "ui-usage-400.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400  # no sideways scrolling of the page


def test_keys_view_creates_rotates_edits_and_revokes(page: Any, server: Server) -> None:
    sign_in(page, server, server.admin)
    page.click("#tab-keys")
    root = page.wait_for_selector('#keys tbody tr.key td.name:has-text("root")')
    assert root.inner_text() == "root (this page's key)"  # the page knows which key it signs in with
    page.click("#new-key")
    page.fill("#key-editor input[name=name]", "ci")
    page.fill("#key-editor input[name=rpm]", "600")
    page.fill("#key-editor input[name=expires_in]", "30d")
    page.click("#editor-save")
    page.wait_for_selector("#secret:not([hidden])")
    secret = page.input_value("#secret-value")
    assert secret.startswith("sk-proj-") and status_of(server, secret) == 200
    page.click("#copy-secret")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.click("#secret-done")
    row = page.locator('#keys tbody tr.key:has(td:text-is("ci"))')
    assert "600 rpm" in row.inner_text() and "chat, embeddings" in row.inner_text()

    page.click('button[aria-label="Rotate ci"]')
    page.click("#confirm-yes")
    page.wait_for_selector("#secret:not([hidden])")
    rotated = page.input_value("#secret-value")
    assert rotated != secret and status_of(server, secret) == 401 and status_of(server, rotated) == 200
    assert "not in the log" in page.locator('#keys tbody tr.key:has(td:text-is("ci"))').inner_text()  # new id
    assert "not in the log" not in page.locator('#keys tbody tr.key:has(td.name:has-text("root"))').inner_text()
    shoot(page, "ui-keys.png")
    page.click("#secret-done")

    page.click('button[aria-label="Edit ci"]')
    page.fill("#key-editor input[name=models]", GLM)
    page.fill("#key-editor input[name=expires_in]", "tomorrow")  # the API's 400 is shown in the form
    page.click("#editor-save")
    page.wait_for_selector("#editor-error:not([hidden])")
    assert "expires_in" in page.inner_text("#editor-error")
    page.fill("#key-editor input[name=expires_in]", "")
    page.click("#editor-save")
    page.wait_for_selector("#key-editor", state="hidden")
    assert status_of(server, rotated, "gpt-4o-mini") == 403 and status_of(server, rotated, GLM) == 200

    page.click('button[aria-label="Revoke ci"]')
    page.click("#confirm-no")  # cancelled: nothing happens
    assert status_of(server, rotated) == 200
    page.click('button[aria-label="Revoke ci"]')
    page.click("#confirm-yes")
    page.wait_for_selector('#keys tbody tr.key:has(td:text-is("ci"))', state="detached")
    assert status_of(server, rotated) == 401
    page.check("#show-revoked")
    assert page.locator('#keys tbody tr.revoked:has(td:text-is("ci"))').count() == 2  # the rotated one and this
    page.set_viewport_size({"width": 400, "height": 800})
    page.click("#new-key")
    shoot(page, "ui-keys-400.png")


def test_a_key_without_admin_sees_neither_usage_nor_keys(page: Any, server: Server) -> None:
    plain = server.cli("keygen", "--name", "plain")
    sign_in(page, server, plain)
    assert page.locator("#tab-usage").is_hidden() and page.locator("#tab-keys").is_hidden()
    assert "admin scope" in page.inner_text("#status")
    request = urllib.request.Request(server.base + "/v1/admin/usage/series",
                                     headers={"Authorization": f"Bearer {plain}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(server.base + "/ui/api/models", timeout=10)
    anonymous.value.close()
    assert anonymous.value.code == 401
    for name in ("app.js", "common.js", "usage.js", "keys.js"):
        with urllib.request.urlopen(f"{server.base}/ui/{name}", timeout=10) as script:
            assert script.status == 200 and "javascript" in script.headers["Content-Type"]


def test_models_open_starts_the_browser_on_the_page(server: Server, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cfai_cli.cli.app import app

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n")
    browser.chmod(0o755)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--open", "--url", server.base], env={"BROWSER": f"{browser} %s"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == server.base + "/ui"
    deadline = time.monotonic() + 5
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().strip() == server.base + "/ui"
    missing = runner.invoke(app, ["models", "--open", "--url", "http://127.0.0.1:9"])
    assert missing.exit_code == 5 and "cfai serve" in missing.stderr
