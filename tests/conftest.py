"""Fixtures for every test: a private CFAI_HOME and no credentials or cfai settings leaking in from the shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Real PostgreSQL, Redis and S3-compatible servers for any test that asks (tests/infra/fixtures.py).
pytest_plugins = ["tests.infra.fixtures"]


@pytest.fixture(autouse=True)
def cfai_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CFAI_HOME at a fresh directory and clear CLOUDFLARE_* / CFAI_* (DESIGN.md habit 8)."""
    for name in list(os.environ):
        if name.startswith(("CLOUDFLARE_", "CFAI_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("cfai-home")
    monkeypatch.setenv("CFAI_HOME", str(home))
    return home
