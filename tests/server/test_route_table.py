"""server.routes: the route table names its endpoints without importing them (time to ready, issue 25), and
says what each endpoint module serves, exactly; a request to a route whose module is not loaded yet loads it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cfai_cli.server import routes as table


def test_the_table_matches_every_endpoint_module() -> None:
    table.warm()  # raises on the first difference between a module's ROUTES and the table


@pytest.mark.parametrize("missing", ["/moderations", "/admin/usage/series"])
def test_a_route_missing_from_the_table_is_caught(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setattr(table, "TABLE", tuple(r for r in table.TABLE if r[2] != missing))
    with pytest.raises(RuntimeError, match=r"routes\.(moderations|admin)\.ROUTES"):
        table.warm()


def test_a_misspelt_module_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "TABLE", (*table.TABLE, ("moderation", "moderations", "/x", ("POST",))))
    with pytest.raises(RuntimeError, match=r"routes\.moderation is missing"):
        table.routes()


def test_building_the_app_imports_no_endpoint_module() -> None:
    code = ("import sys; from cfai_cli.server import app; "
            "print(sorted(m for m in sys.modules if m.startswith('cfai_cli.server.routes.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.rsplit(".", 1)[1] for name in eval(out)}
    assert not loaded & {module for module, _, _, _ in table.TABLE}, loaded
