"""The browser page, end to end in headless Chromium against `cfai serve --offline`: the catalogue renders,
filtering works, the usage chart shows the requests this test made. Screenshots go to .artifacts/.

Chromium is Debian's package (`.ci/run` installs it); Playwright drives it with `executable_path`, so no
browser is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_health

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CFAI_TEST_ARTIFACTS", ROOT / ".artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture
def server(cfai_home: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = dict(os.environ)
    key = subprocess.run([sys.executable, "-m", "cfai_cli", "keygen", "--scopes", "all"], capture_output=True,
                         text=True, env=env, check=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "cfai_cli", "serve", "--offline", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for_health(proc, port)
    try:
        yield base, key
    finally:
        proc.terminate()
        proc.communicate(timeout=15)  # reaps it and closes its stderr pipe


def chat(base: str, key: str, model: str) -> None:
    request = urllib.request.Request(base + "/v1/chat/completions", method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
    urllib.request.urlopen(request, timeout=10).close()


def test_model_browser_and_usage_dashboard(server: tuple[str, str]) -> None:
    base, key = server
    for _ in range(3):
        chat(base, key, "@cf/zai-org/glm-4.7-flash")
    with urllib.request.urlopen(base + "/ui", timeout=10) as response:
        html = response.read().decode()
        csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "<script src=\"/ui/app.js\"" in html and key not in html

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(base + "/ui")
        page.fill("#key", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#models tbody tr.model")
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
        page.click("#models tbody tr.model >> nth=0")
        assert "/v1/chat/completions" in page.inner_text("#snippet-curl") and key not in page.content()
        page.screenshot(path=str(ARTIFACTS / "ui-models.png"), full_page=True)

        page.click("#tab-usage")
        page.wait_for_selector("#chart rect.req")
        rows = {r.split("\t")[0]: r.split("\t") for r in page.locator("#by-model tbody tr").all_inner_texts()}
        assert rows["@cf/zai-org/glm-4.7-flash"][1] == "3"
        assert int(page.inner_text("#totals").split()[0]) >= 3
        page.screenshot(path=str(ARTIFACTS / "ui-usage.png"), full_page=True)
        browser.close()
    assert problems == []
    assert (ARTIFACTS / "ui-models.png").stat().st_size > 10_000


def test_usage_needs_an_admin_key_and_the_page_needs_none(server: tuple[str, str], cfai_home: Path) -> None:
    base, _ = server
    plain = subprocess.run([sys.executable, "-m", "cfai_cli", "keygen"], capture_output=True, text=True,
                           env=dict(os.environ), check=True).stdout.strip()
    request = urllib.request.Request(base + "/ui/api/usage", headers={"Authorization": f"Bearer {plain}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(base + "/ui/api/models", timeout=10)
    anonymous.value.close()
    assert anonymous.value.code == 401
    with urllib.request.urlopen(base + "/ui/app.js", timeout=10) as script:
        assert script.status == 200


def test_models_open_starts_the_browser_on_the_page(server: tuple[str, str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cfai_cli.cli.app import app

    base, _ = server
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n")
    browser.chmod(0o755)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--open", "--url", base], env={"BROWSER": f"{browser} %s"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == base + "/ui"
    deadline = time.monotonic() + 5
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().strip() == base + "/ui"
    missing = runner.invoke(app, ["models", "--open", "--url", "http://127.0.0.1:9"])
    assert missing.exit_code == 5 and "cfai serve" in missing.stderr
