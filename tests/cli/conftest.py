"""Fixtures for CLI tests: `cli(*args, input=...)` runs the real `cfai` app in-process with Typer's runner.

The runner keeps stdout and stderr apart (`result.stdout`, `result.stderr`); upstream calls go to the
built-in emulator via --offline, or fail fast on purpose (missing credentials, a closed port).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

from cfai_cli.cli.app import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli() -> Invoke:
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
        # catch_exceptions=False: a bug surfaces as its own traceback in the test, not as exit status 1.
        return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    return invoke
