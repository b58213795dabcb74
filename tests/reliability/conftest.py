"""Fixtures for the reliability suite: tests/server's proxy fixtures with a 0.5 s deadline and no retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfai_cli.settings import Settings, load_settings
from tests.server.conftest import anyio_backend, api_key, fake, proxy  # noqa: F401  (fixtures, re-exported)

TIMEOUT = 0.5


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"account_id": "0123abcd", "api_token": "cf-secret-token-value", "timeout": TIMEOUT,
                          "max_retries": 0}, environ={"CFAI_HOME": str(tmp_path)})
