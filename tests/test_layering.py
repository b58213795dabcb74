"""The import arrows of DESIGN.md, checked on the AST: cli -> server -> service -> upstream -> core.

`errors` sits beneath everything; `core` imports only pydantic and the standard library (and orjson and msgspec in
core/jsonfast.py); nothing imports `cli`; server code never imports typer or rich. The offline emulator stands
apart: it imports only the standard library and starlette (it fakes Cloudflare, so it must not share cfai's
code), and only the offline transport in service/context.py imports it. Three things issue 19 removes may not
grow back: server code reaching into upstream's internals (it goes through service), `ContextVar`s (hidden
control channels: pass values as arguments), and duck typing between the layers of a request (`getattr` on
what another layer hands over, such as a stream's `batches` or `aclose`: give it a type instead).
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

# What server code imports from cfai_cli.upstream, "module.name" (or the module, for `import m`): nothing.
# Nothing may be added: server talks to service.
SERVER_UPSTREAM_IMPORTS: set[str] = set()

# The ContextVars that exist, by module and name: none (the wait and retry channels became arguments).
CONTEXT_VARS: dict[str, set[str]] = {}

# `getattr(obj, "name", ...)` in service and server code, by module and attribute name: only on Starlette's
# own loosely typed objects (app.state and the matched route), never on what another cfai layer hands over.
GETATTRS: dict[str, set[str]] = {
    "server/errors.py": {"scrubber"},
    "server/metrics.py": {"path"},
    "server/routes/health.py": {"ctx"},
}


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
            # orjson and msgspec only behind core.jsonfast, which falls back to the stdlib (docs/performance.md).
            fast_json = top in {"orjson", "msgspec"} and path.name == "jsonfast.py"
            assert top in STDLIB or top in {"pydantic", "__future__"} or fast_json, (
                f"{path.relative_to(PACKAGE)}:{lineno}: core may import only pydantic and the stdlib "
                f"(and orjson and msgspec in core/jsonfast.py), not {top}")
        else:
            assert top not in THIRD_PARTY_BANNED.get(layer, set()), (
                f"{path.relative_to(PACKAGE)}:{lineno}: {layer} must not import {top}")


def test_the_checker_catches_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\nfrom cfai_cli.cli import app\n")
    assert [name for _, name in imports(bad)] == ["httpx", "cfai_cli.cli"]


def upstream_imports(path: Path) -> list[tuple[int, str]]:
    """Every name `path` imports from cfai_cli.upstream (or below it), as "module.name"."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return [(n, name) for n, name in found if name == "cfai_cli.upstream" or name.startswith("cfai_cli.upstream.")]


@pytest.mark.parametrize("path", [p for p in MODULES if layer_of(p) == "server"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_server_does_not_reach_into_upstream(path: Path) -> None:
    for lineno, name in upstream_imports(path):
        assert name in SERVER_UPSTREAM_IMPORTS, (
            f"{path.relative_to(PACKAGE)}:{lineno}: server must not import {name}: go through cfai_cli.service")


def context_vars(path: Path) -> list[tuple[int, str]]:
    """The ContextVars `path` creates, with the name each is assigned to (`?` when it is not a plain name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "contextvars":
            classes.update(a.asname or a.name for a in node.names if a.name == "ContextVar")
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "contextvars")

    def creates(call: ast.AST) -> bool:
        if not isinstance(call, ast.Call):
            return False
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in classes
        return (isinstance(func, ast.Attribute) and func.attr == "ContextVar" and isinstance(func.value, ast.Name)
                and func.value.id in modules)

    named: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and creates(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                named[id(node.value)] = targets[0].id
    return [(node.lineno, named.get(id(node), "?")) for node in ast.walk(tree) if creates(node)]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_new_context_vars(path: Path) -> None:
    rel = path.relative_to(PACKAGE).as_posix()
    for lineno, name in context_vars(path):
        assert name in CONTEXT_VARS.get(rel, set()), (
            f"{rel}:{lineno}: a new ContextVar ({name}) is a hidden control channel; pass the value as an argument")


def getattrs(path: Path) -> list[tuple[int, str]]:
    """The `getattr` calls of `path`, with the attribute each names (`?` when it is not a literal)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            name = node.args[1] if len(node.args) > 1 else None
            found.append((node.lineno, name.value if isinstance(name, ast.Constant) and isinstance(name.value, str)
                          else "?"))
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if layer_of(p) in ("server", "service")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_duck_typing_between_layers(path: Path) -> None:
    rel = path.relative_to(PACKAGE).as_posix()
    for lineno, name in getattrs(path):
        assert name in GETATTRS.get(rel, set()), (
            f"{rel}:{lineno}: getattr(..., {name!r}) duck-types what another layer handed over; give it a type")


def test_the_allow_lists_are_not_stale() -> None:
    """Each allowed exception still exists: once removed, it leaves the list (and cannot come back)."""
    used = {name for p in MODULES if layer_of(p) == "server" for _, name in upstream_imports(p)}
    assert used >= SERVER_UPSTREAM_IMPORTS, f"no longer imported by server: {SERVER_UPSTREAM_IMPORTS - used}"
    made = {(p.relative_to(PACKAGE).as_posix(), name) for p in MODULES for _, name in context_vars(p)}
    allowed = {(rel, name) for rel, names in CONTEXT_VARS.items() for name in names}
    assert made >= allowed, f"ContextVars gone: {allowed - made}"
    looked_up = {(p.relative_to(PACKAGE).as_posix(), name) for p in MODULES for _, name in getattrs(p)}
    listed = {(rel, name) for rel, names in GETATTRS.items() for name in names}
    assert looked_up >= listed, f"getattrs gone: {listed - looked_up}"


def test_the_checkers_catch_upstream_imports_and_context_vars(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import contextvars as cv\nimport cfai_cli.upstream.pool\n"
                   "from contextvars import ContextVar as CV\nfrom cfai_cli.upstream.workers import NO_RETRY\n"
                   "A = CV('a')\nB: cv.ContextVar[int] = cv.ContextVar('b')\nitems = [CV('c')]\n")
    assert [name for _, name in upstream_imports(bad)] == ["cfai_cli.upstream.pool",
                                                          "cfai_cli.upstream.workers.NO_RETRY"]
    assert sorted(name for _, name in context_vars(bad)) == ["?", "A", "B"]
    bad.write_text("getattr(stream, 'batches', None)\ngetattr(x, name)\n")
    assert getattrs(bad) == [(1, "batches"), (2, "?")]
