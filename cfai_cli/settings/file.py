"""The whole config file as one pydantic model: core.config_file's tables plus a key per scalar setting, the
keys made from the Settings dataclass (their one list), so a typo anywhere fails with its TOML path.

Imported when settings are loaded or written, never by `cfai --help`. Imports: pydantic, stdlib, errors, core,
settings. `coerce` checks one value from the environment or the command line the way the file's are checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, create_model

from cfai_cli.core.blobs import BlobsConfig, parse_s3_url
from cfai_cli.core.cache import CacheConfig
from cfai_cli.core.catalog import DEFAULT_ALIASES, DEFAULT_VISION_ALIASES
from cfai_cli.core.coordination import CoordinationConfig
from cfai_cli.core.routing import RoutingConfig
from cfai_cli.core.store_url import StoreConfig, check_store_url
from cfai_cli.errors import ConfigError
from cfai_cli.settings import SETTINGS, read_config_file

if TYPE_CHECKING:  # the schema's classes cost ~15 ms to build: only when there is a file or a value to check
    from cfai_cli.core.config_file import ConfigTables


def _trimmed(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


# the dataclass's annotation (a string: `from __future__ import annotations`) -> (pydantic type, what it expects)
_KINDS: dict[str, tuple[Any, str]] = {
    "str": (Annotated[str, BeforeValidator(_trimmed)], "a string"),
    "str | None": (Annotated[str, BeforeValidator(_trimmed)], "a string"),
    "float": (Annotated[float, BeforeValidator(_trimmed), Field(gt=0, allow_inf_nan=False)], "a number above 0"),
    "int": (Annotated[int, BeforeValidator(_trimmed), Field(ge=0)], "a whole number, 0 or more"),
    "bool": (Annotated[bool, BeforeValidator(_trimmed)], "true or false"),
}
EXPECTED = {spec.name: _KINDS[str(spec.type)][1] for spec in SETTINGS}
SETTINGS_BY_NAME = {spec.name: spec for spec in SETTINGS}


@cache
def config_model(strict: bool = False) -> type[ConfigTables]:
    """ConfigTables with one optional key per scalar setting (None: not in the file). A setting with a shape of
    its own (account_id, api_base) is checked by core.config_file's validators: strictly what `cfai config set`
    writes (`strict`: a real account id), for safety only what is read (test ids and old files keep loading;
    `cfai doctor` asks Cloudflare)."""
    from cfai_cli.core.config_file import ConfigTables
    from cfai_cli.core.config_shapes import SHAPED, SHAPED_STRICT

    shaped = SHAPED_STRICT if strict else SHAPED
    keys: dict[str, Any] = {spec.name: (shaped.get(spec.name, _KINDS[str(spec.type)][0]) | None, None)
                            for spec in SETTINGS}
    model: type[ConfigTables] = create_model("ConfigFile", __base__=ConfigTables, **keys)
    return model


@dataclass(frozen=True)
class SettingsFile:
    """What config.toml says: the scalar settings it sets, the alias tables merged over the defaults, routing."""

    values: Mapping[str, Any]
    aliases: dict[str, str]
    vision_aliases: dict[str, str]
    routing: RoutingConfig
    cache: CacheConfig = field(default_factory=CacheConfig)
    blobs: BlobsConfig = field(default_factory=BlobsConfig)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tables: frozenset[str] = frozenset()  # the tables the file has ([aliases], [cache], ...)

    @classmethod
    def empty(cls) -> SettingsFile:
        return cls({}, {**DEFAULT_ALIASES}, {**DEFAULT_VISION_ALIASES}, RoutingConfig())


def read_settings_file(path: Path) -> SettingsFile:
    data = read_config_file(path)
    if not data:  # no file (settings from the environment alone): nothing to check, the schema is not built
        return SettingsFile.empty()
    from cfai_cli.core.config_file import parse_tables

    # the text again (a small file) only to say on which line a mistake is; tomllib keeps no positions
    text = path.read_text(encoding="utf-8", errors="replace")
    tables, routing = parse_tables(data, source=str(path), model=config_model(), hints=EXPECTED, text=text)
    values = {spec.name: getattr(tables, spec.name) for spec in SETTINGS if getattr(tables, spec.name) is not None}
    used = {"routing" if name in ("upstreams", "routes") else name for name in data if isinstance(data[name], dict)}
    return SettingsFile(values, tables.merged_aliases(), {**DEFAULT_VISION_ALIASES, **tables.vision_aliases},
                        routing, tables.cache.runtime(), tables.blobs.runtime(), tables.coordination.runtime(),
                        tables.store.runtime(), frozenset(used))


@cache
def _setting_model(key: str, strict: bool) -> type[BaseModel]:
    """A model of the one key, typed as config_model types it: checking a value from the environment or a flag
    builds neither the file's schema nor its tables' classes (~35 ms of every command's start-up)."""
    from cfai_cli.core.config_shapes import SHAPED, SHAPED_STRICT

    shaped = SHAPED_STRICT if strict else SHAPED
    kind = shaped.get(key, _KINDS[str(SETTINGS_BY_NAME[key].type)][0])
    fields: dict[str, Any] = {key: (kind | None, None)}
    model: type[BaseModel] = create_model(f"Setting_{key}", **fields)
    return model


def blobs_url(value: str, source: str) -> str:
    """CFAI_BLOBS_URL checked as [blobs] url is."""
    value = value.strip()
    try:
        parse_s3_url(value)
    except ValueError as exc:
        raise ConfigError(f"Invalid value for blobs.url in {source}: {value!r} ({exc}).") from None
    return value


def store_url(value: str, source: str) -> str:
    """CFAI_STORE_URL checked as [store] url is; the message never repeats the value (it may hold a password)."""
    try:
        return check_store_url(value)
    except ValueError as exc:
        raise ConfigError(f"Invalid value for store.url in {source}: it {exc}.") from None


def coerce(key: str, value: Any, source: str, *, strict: bool = False) -> Any:
    """A setting's value in its type, or a ConfigError naming where the bad value came from; `strict`: as
    `cfai config set` writes it (config_model)."""
    model = _setting_model(key, strict)
    try:
        return getattr(model.model_validate({key: value}), key)
    except ValidationError as exc:
        error = exc.errors()[0]
        expected = str(error["ctx"]["error"]) if error["type"] == "value_error" else f"expected {EXPECTED[key]}"
        raise ConfigError(f"Invalid value for {key} in {source}: {value!r} ({expected}).") from None
