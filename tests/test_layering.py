"""The import arrows of DESIGN.md, checked on the AST: cli -> server -> service -> upstream -> core.

`errors` sits beneath everything; `core` imports only pydantic and the standard library (and orjson in
core/jsonfast.py); nothing imports `cli`; server code never imports typer or rich. The offline emulator stands
apart: it imports only the standard library and starlette (it fakes Cloudflare, so it must not share cfai's
code), and only the offline transport in service/context.py imports it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cfai_cli"

# layer -> cfai_cli layers it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors", "core"},
    "settings": {"errors", "core"},
    "upstream": {"errors", "core", "upstream", "__init__"},
    "store": {"errors", "core", "store", "settings"},
    "service": {"errors", "core", "upstream", "settings", "service", "store", "emulator"},
    "server": {"errors", "core", "upstream", "settings", "service", "store", "server", "__init__"},
    "cli": {"errors", "core", "upstream", "settings", "service", "store", "server", "cli", "__init__"},
    "emulator": {"emulator"},
    "__init__": set(),
    "__main__": {"cli"},
}
# layer -> the only modules (relative to cfai_cli) that may import it
IMPORTED_ONLY_BY: dict[str, set[str]] = {
    "emulator": {"service/context.py"},
}
THIRD_PARTY_BANNED = {
    "core": {"httpx", "starlette", "typer", "rich", "uvicorn", "platformdirs", "click"},
    "service": {"starlette", "typer", "rich", "uvicorn", "click"},
    "upstream": {"typer", "rich", "click"},
    "server": {"typer", "rich", "click"},
    "store": {"httpx", "starlette", "typer", "rich", "uvicorn"},
    "settings": {"httpx", "starlette", "typer", "rich", "uvicorn"},
}
STDLIB = set(sys.stdlib_module_names)


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: use absolute imports")
            assert node.module is not None
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_arrows(path: Path) -> None:
    layer = layer_of(path)
    assert layer in ALLOWED, f"new top-level module {layer}: add it to the layering table"
    for lineno, name in imports(path):
        top = name.split(".")[0]
        if top == "cfai_cli":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            assert target in ALLOWED[layer] or target == layer, (
                f"{path.relative_to(PACKAGE)}:{lineno}: {layer} must not import cfai_cli.{target}")
            importers = IMPORTED_ONLY_BY.get(target)
            assert importers is None or target == layer or path.relative_to(PACKAGE).as_posix() in importers, (
                f"{path.relative_to(PACKAGE)}:{lineno}: only {sorted(importers or ())} may import cfai_cli.{target}")
        elif layer == "emulator":
            assert top in STDLIB or top in {"starlette", "__future__"}, (
                f"{path.relative_to(PACKAGE)}:{lineno}: the emulator may import only starlette and the stdlib, "
                f"not {top}")
        elif layer == "core":
            # orjson only behind core.jsonfast, which falls back to the stdlib (docs/performance.md).
            fast_json = top == "orjson" and path.name == "jsonfast.py"
            assert top in STDLIB or top in {"pydantic", "__future__"} or fast_json, (
                f"{path.relative_to(PACKAGE)}:{lineno}: core may import only pydantic and the stdlib "
                f"(and orjson in core/jsonfast.py), not {top}")
        else:
            assert top not in THIRD_PARTY_BANNED.get(layer, set()), (
                f"{path.relative_to(PACKAGE)}:{lineno}: {layer} must not import {top}")


def test_the_checker_catches_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\nfrom cfai_cli.cli import app\n")
    assert [name for _, name in imports(bad)] == ["httpx", "cfai_cli.cli"]
