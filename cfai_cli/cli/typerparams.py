"""Typer's parameters without a pydantic validator where the value needs no conversion (the console script only).

Typer 0.29 converts every parameter's value with a pydantic `TypeAdapter` it builds the first time the parameter
is processed (`_TyperParameter.get_runtime_param`), and it processes every parameter of the command run, given
or not: `cfai chat hi` built 13 of them (the root's and the command's `--help`, `--install-completion`,
`--show-completion`, PROMPT, and each option left out), and the first one imported pydantic through
`typer._adapters`. Two kinds of value come out of those validators unchanged, so nothing is built for them:

- None (a parameter not given, without a default): Typer's own `RuntimeParam.coerce` returns None, or () for a
  repeated option or a variadic argument, before it looks at the validator;
- a `str` for a parameter annotated `str` with no `parser` (PROMPT, `-m`, `-s`): the validator
  is `Annotated[str, BeforeValidator(_parse_cli_str)]`, and `_parse_cli_str` returns `str(value)`, the
  same string, which pydantic's `str` accepts as it is.

Every other value (a number, a path, a choice, a list, a bytes argument) goes through Typer's validator, built
and kept as Typer builds it, so the conversions and every error message are Typer's. Counted under callgrind
(2026-12-02, round 8): `cfai chat hi` 672.0 -> 663.9 M instructions (the 13 adapters and `typer._adapters`;
pydantic is then first imported by the command itself, with the collector paused). `tests/cli/
test_typerparams.py` checks every command's parameters give the same values and errors both ways.
"""

from __future__ import annotations

from typing import Any

from typer import core
from typer._coercion import RuntimeParam

_typers_own = core._TyperParameter.get_runtime_param


class _Unconverted:
    """A parameter's runtime conversion until a value needs Typer's: None and plain text are returned as
    Typer's validator would return them; anything else builds Typer's (kept on the parameter) and uses it."""

    __slots__ = ()

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        descriptor = param.type_descriptor
        if type(value) is str and descriptor.annotation is str and descriptor.parameter_info.parser is None:
            return value  # a `str` parameter is one value (Typer repeats only a `list[...]` or a tuple's)
        real: RuntimeParam = _typers_own(param)
        return real.coerce(value, param=param, ctx=ctx)


_UNCONVERTED = _Unconverted()


def _runtime_param(self: Any) -> Any:
    """`_TyperParameter.get_runtime_param`: Typer's validator once built, else the stand-in above."""
    found = self._runtime_param
    return _UNCONVERTED if found is None else found


def install() -> None:
    """Put `_runtime_param` in Typer's place (once; the console script calls it after importing the app)."""
    core._TyperParameter.get_runtime_param = _runtime_param  # type: ignore[method-assign]
