"""The console script's table of compiled text (cli/compiled.py): the same dataclasses and forward references,
less compiling."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.cli import compiled
from cfai_cli.cli.compiled import CompiledSources


@pytest.fixture(autouse=True)
def _bytecode_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """As for a user (the test run may set PYTHONDONTWRITEBYTECODE)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def _make(name: str = "Point") -> Any:
    """A frozen, slotted dataclass made at run time, its annotations real types (not this module's strings)."""
    namespace = {"__annotations__": {"x": int, "label": str}, "label": "origin"}
    return dataclasses.dataclass(frozen=True, slots=True)(type(name, (), namespace))


def _hinted(a: Path, b: int | None = None) -> list[Path]:
    """Its annotations are strings (this module's `from __future__ import annotations`): forward references."""
    return [a]


HINTS = {"a": Path, "b": int | None, "return": list[Path]}


def _with(table: CompiledSources, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(dataclasses, "exec", table.exec, raising=False)
    monkeypatch.setattr(typing, "compile", table.compile, raising=False)
    return _make()


def test_a_class_made_through_the_table_behaves_as_one_made_without(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _make()
    table = CompiledSources(str(tmp_path / "t.marshal"))
    cached = _with(table, monkeypatch)
    assert table.learned and len(table.codes) >= 5  # __init__, __repr__, __eq__, __setattr__, __delattr__, __hash__
    for cls in (plain, cached):
        point = cls(3)
        assert repr(point) == "Point(x=3, label='origin')"
        assert point == cls(3, "origin") and point != cls(4)
        assert hash(point) == hash((3, "origin"))
        with pytest.raises(dataclasses.FrozenInstanceError):
            point.x = 5
        assert not hasattr(point, "__dict__")
        # The methods' annotations are the types, as `exec` in dataclasses.py compiles them (no inherited
        # `from __future__ import annotations`, which would make them the names of dataclasses' locals).
        assert cls.__init__.__annotations__ == {"x": int, "label": str, "return": None}
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
            cls()


def test_forward_references_compile_through_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = CompiledSources(str(tmp_path / "t.marshal"))
    _with(table, monkeypatch)
    ref = typing.ForwardRef("dict[str, list[int]] | None")
    assert ("eval", "dict[str, list[int]] | None") in table.codes
    assert typing.ForwardRef("dict[str, list[int]] | None").__forward_code__ is ref.__forward_code__
    assert ref._evaluate(globals(), None, frozenset()) == (dict[str, list[int]] | None)  # type: ignore[attr-defined]
    assert typing.get_type_hints(_hinted) == HINTS
    assert ("eval", "int | None") in table.codes
    with pytest.raises(SyntaxError, match="Forward reference must be an expression"):
        typing.ForwardRef("not valid(")
    assert table.compile("1 + 1", "<other>", "eval").co_filename == "<other>"  # other calls: the builtin's own



def test_annotations_and_named_tuples_evaluate_through_the_table(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """inspect's `eval` (how Typer reads a command's string annotations) and namedtuple's: the same results."""
    import collections
    import inspect

    plain_hints = inspect.get_annotations(_hinted, eval_str=True)
    plain_pair = collections.namedtuple("Pair", "left right", defaults=(0,))
    table = CompiledSources(str(tmp_path / "t.marshal"))
    monkeypatch.setattr(inspect, "eval", table.eval, raising=False)
    monkeypatch.setattr(collections, "eval", table.eval, raising=False)
    assert inspect.get_annotations(_hinted, eval_str=True) == plain_hints == HINTS
    assert ("eval", "int | None") in table.codes
    assert inspect.signature(_hinted, eval_str=True).parameters["b"].annotation == (int | None)
    pair = collections.namedtuple("Pair", "left right", defaults=(0,))
    assert ("eval", "lambda _cls, left, right: _tuple_new(_cls, (left, right))") in table.codes
    for cls in (plain_pair, pair):
        assert cls(1) == (1, 0) and repr(cls(1, 2)) == "Pair(left=1, right=2)"
        assert cls.__new__.__name__ == "__new__" and cls.__new__.__defaults__ == (0,)
    # the builtin's own steps: leading spaces and tabs stripped, globals and locals used, errors its own
    assert table.eval(" \t1 + x", {"x": 2}) == 3 and ("eval", "1 + x") in table.codes
    assert table.eval("y", {}, {"y": 4}) == 4
    assert table.eval(compile("5", "<c>", "eval")) == 5
    for text in ("not valid(", "1\0", "missing_name", " \t(", "\n1 +"):
        with pytest.raises(Exception) as builtin:
            eval(text, {})
        with pytest.raises(Exception) as through:
            table.eval(text, {})
        assert (type(through.value), str(through.value)) == (type(builtin.value), str(builtin.value))


def test_a_seeded_module_execs_its_text_through_the_table(tmp_path: Path) -> None:
    """typing_inspection builds its checks from text as pydantic imports it: through the table after
    install(), in a fresh interpreter (the module is imported once per process), and they check the same as
    without the table."""
    probe = (
        "import sys\n"
        "from cfai_cli.cli import compiled\n"
        f"compiled.table_path = lambda: {str(tmp_path / 't.marshal')!r}\n"
        "table = compiled.install() if sys.argv[1] == 'table' else None\n"
        "import typing\n"
        "from typing import Annotated, ClassVar, Final, Literal, Union\n"
        "from typing_inspection import typing_objects as t\n"
        "if table is not None:\n"
        "    assert t.exec.__self__ is table, t.exec\n"
        "    assert not any(isinstance(f, compiled._Seeding) for f in sys.meta_path)\n"
        "n = sum(1 for mode, text in table.codes if mode == 'exec' and 'def is_' in text) if table else 0\n"
        "objects = (Annotated, Annotated[int, 1], ClassVar, Final, Literal, Union, int, typing.TypeVar('T'), None)\n"
        "names = sorted(name for name in dir(t) if name.startswith('is_'))\n"
        "print(n, len(names), [[getattr(t, name)(o) for o in objects] for name in names])\n"
    )
    runs = [subprocess.run([sys.executable, "-c", probe, way], capture_output=True, text=True, cwd=tmp_path,
                           timeout=60) for way in ("table", "plain")]
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    (seeded, checks, results), (_, plain_checks, plain_results) = (run.stdout.split(" ", 2) for run in runs)
    assert int(seeded) >= 20 and int(checks) >= 20 and (checks, results) == (plain_checks, plain_results)
    assert "True" in results and "False" in results


def test_seeding_leaves_other_imports_and_loaders_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The finder finds nothing itself: a name it was not given is every other finder's, a name nothing can
    find is not found, and it leaves `sys.meta_path` once it has seen its names."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    seeding = compiled._Seeding(("no_such_module_anywhere", "json.tool"), CompiledSources("/nonexistent"))
    sys.meta_path.insert(0, seeding)
    assert seeding.find_spec("json") is None
    assert seeding.find_spec("no_such_module_anywhere") is None and seeding in sys.meta_path
    spec = seeding.find_spec("json.tool", __import__("json").__path__)
    assert spec is not None and spec.name == "json.tool" and seeding not in sys.meta_path

def test_a_saved_table_is_loaded_and_nothing_is_compiled_again(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pycache" / "t.marshal"
    first = CompiledSources(str(path))
    _with(first, monkeypatch)
    typing.get_type_hints(_hinted)
    first.save()
    assert path.is_file()

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    again = CompiledSources(str(path))
    monkeypatch.setattr(compiled, "compile", no_compiling, raising=False)
    cls = _with(again, monkeypatch)
    assert not again.learned and again.used <= set(again.codes)
    assert cls(1) == cls(1, "origin")
    assert typing.get_type_hints(_hinted) == HINTS
    again.save()  # nothing learned: the file is not written again
    assert not list(path.parent.glob("*.tmp"))


# Another release of Python's table (its bytecode magic number), and a table without one.
OTHER_PYTHON = marshal.dumps((b"\x00\x00\r\n", {("exec", "x = 1"): compile("x = 1", "<string>", "exec")}))


@pytest.mark.parametrize("content", [b"", b"\x00garbage", b"\xe3" * 40, marshal.dumps({("exec", "x = 1"): None}),
                                     OTHER_PYTHON])
def test_an_unreadable_table_is_an_empty_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes) -> None:
    path = tmp_path / "t.marshal"
    path.write_bytes(content)
    table = CompiledSources(str(path))
    assert table.codes == {}
    assert _with(table, monkeypatch)(2).x == 2
    table.save()
    assert CompiledSources(str(path)).codes.keys() == table.codes.keys()


def test_nothing_is_written_where_bytecode_would_not_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    table = CompiledSources(str(tmp_path / "t.marshal"))
    _with(table, monkeypatch)
    table.save()
    assert not (tmp_path / "t.marshal").exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        CompiledSources(str(read_only / "t.marshal")).save()  # learned nothing: no attempt
        blocked = CompiledSources(str(read_only / "t.marshal"))
        _with(blocked, monkeypatch)
        blocked.save()  # a read-only install: no error, no file (root may write anyway)
        assert not list(read_only.glob("*.tmp"))
    finally:
        read_only.chmod(0o700)


def test_a_big_table_keeps_only_what_the_last_run_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "LIMIT", 3)
    table = CompiledSources(str(tmp_path / "t.marshal"))
    table.codes = {("exec", f"x = {n}"): compile(f"x = {n}", "<string>", "exec") for n in range(10)}
    _with(table, monkeypatch)
    table.save()
    assert CompiledSources(str(tmp_path / "t.marshal")).codes.keys() == table.used


def test_the_console_script_uses_the_table_and_a_second_run_compiles_nothing(tmp_path: Path) -> None:
    """Through `cli.entry.main`, as `cfai` runs: the first run writes the table next to cfai's bytecode, the
    next one finds every method it needs there."""
    probe = (
        "import atexit, dataclasses, sys, typing\n"
        "sys.argv = ['cfai', 'chat', '--help']\n"  # through Typer (`cfai --help` may print a kept listing)
        "from cfai_cli.cli.entry import main\n"
        "def report():\n"
        "    table = dataclasses.exec.__self__\n"
        "    both = typing.compile.__self__ is table\n"
        "    sys.stderr.write(f'TABLE:{table.path}:{len(table.used)}:{table.learned}:{both}')\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "atexit.register(report)\n"  # registered after the table's save, so it runs before it (LIFO)
    )
    env = {**os.environ, "CFAI_HOME": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=60).stderr.rsplit("TABLE:", 1)[-1].split(":") for _ in range(2)]
    # next to the bytecode of the cfai_cli the console script imported (the checkout's, or an installed copy's
    # when the package is installed: then `python -c` in tmp_path imports that one, not this test's)
    written = Path(runs[0][0])
    assert written.is_file() and runs[1][0] == runs[0][0]
    assert written.name == Path(compiled.table_path()).name and written.parent.name == "__pycache__"
    assert written.parent.parent.name == "cfai_cli"
    # Typer's, click's and cfai's dataclasses, and the type hints of the root and chat commands: none compiled again
    assert int(runs[1][1]) > 20 and runs[1][2:] == ["False", "True"]


def test_a_table_that_cannot_be_written_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a directory")
    table = CompiledSources(str(tmp_path / "file" / "t.marshal"))  # its directory cannot be made, even by root
    _with(table, monkeypatch)
    table.save()  # no error: the next run compiles again, as without the table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_install_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(compiled, "table_path", lambda: str(tmp_path / "t.marshal"))
    # The builtins in their place, so that the test's end takes away what install() put there.
    monkeypatch.setattr(dataclasses, "exec", exec, raising=False)
    monkeypatch.setattr(typing, "compile", compile, raising=False)
    import collections
    import inspect

    monkeypatch.setattr(inspect, "eval", eval, raising=False)
    monkeypatch.setattr(collections, "eval", eval, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    registered: list[object] = []
    monkeypatch.setattr("atexit.register", registered.append)
    table = compiled.install()
    assert table is not None and registered == [table.save]
    assert dataclasses.exec.__self__ is table and typing.compile.__self__ is table  # type: ignore[attr-defined]
    assert inspect.eval.__self__ is table and collections.eval.__self__ is table  # type: ignore[attr-defined]
    assert isinstance(sys.meta_path[0], compiled._Seeding) and sys.meta_path[0].names == set(compiled.SEEDED)
    assert compiled.install() is None and len(registered) == 1
