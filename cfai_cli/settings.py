"""Typed settings with one precedence: command-line flag > environment > config file > default.

Environment: CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CFAI_API_BASE, CFAI_TIMEOUT, CFAI_MODEL, CFAI_HOME,
CFAI_USAGE_RETENTION_DAYS, CFAI_RESPONSES_RETENTION_DAYS.
Config file: `config.toml` in the config directory (CFAI_HOME if set, else the platform's user config dir),
created 0600 because it may hold the API token. Nothing is read at import time. Imports: stdlib, errors, core.
"""

from __future__ import annotations

import contextlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfai_cli.core.catalog import DEFAULT_ALIASES, DEFAULT_CHAT_MODEL, DEFAULT_VISION_ALIASES, validate_model_id
from cfai_cli.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:  # routing is imported when settings are loaded, not by every `cfai --help`
    from cfai_cli.core.routing import RoutingConfig


def _no_routing() -> RoutingConfig:
    from cfai_cli.core.routing import RoutingConfig

    return RoutingConfig()


DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
OFFLINE_API_BASE = "http://offline.cfai.invalid/client/v4"
OFFLINE_ACCOUNT_ID = "offline"

# key in config.toml -> (environment variable or None, type)
_FIELDS: dict[str, tuple[str | None, type]] = {
    "account_id": ("CLOUDFLARE_ACCOUNT_ID", str),
    "api_token": ("CLOUDFLARE_API_TOKEN", str),
    "api_base": ("CFAI_API_BASE", str),
    "timeout": ("CFAI_TIMEOUT", float),
    "default_model": ("CFAI_MODEL", str),
    "default_max_tokens": (None, int),
    "max_retries": (None, int),
    "max_body_mb": (None, float),
    "max_json_mb": (None, float),
    "body_timeout": (None, float),
    "header_timeout": (None, float),
    "allow_private_fetch": (None, bool),
    "image_ttl_hours": (None, float),
    "image_url_auth": (None, bool),
    "max_concurrency": (None, int),
    "max_connections": (None, int),
    "max_in_flight_per_key": (None, int),
    "cors_origins": (None, str),
    "ui": (None, bool),
    "fast_http": (None, bool),
    "usage_retention_days": ("CFAI_USAGE_RETENTION_DAYS", int),
    "responses_retention_days": ("CFAI_RESPONSES_RETENTION_DAYS", int),
}
SETTABLE_KEYS = (*_FIELDS, "aliases.<name>", "vision_aliases.<name>")


@dataclass(frozen=True)
class Settings:
    account_id: str | None = None
    api_token: str | None = field(default=None, repr=False)
    api_base: str = DEFAULT_API_BASE
    timeout: float = 300.0
    default_model: str = DEFAULT_CHAT_MODEL
    default_max_tokens: int = 4096
    max_retries: int = 3
    max_body_mb: float = 25.0
    max_json_mb: float = 16.0
    body_timeout: float = 30.0  # seconds from a request's head to the end of its body (408 beyond)
    header_timeout: float = 10.0  # seconds for a request head to arrive on a connection (closed beyond)
    allow_private_fetch: bool = False
    image_ttl_hours: float = 24.0
    image_url_auth: bool = False
    max_concurrency: int = 512
    max_connections: int = 512  # the upstream connection pool: as large as the cap, so the cap is what limits
    max_in_flight_per_key: int = 64  # one key's requests in flight (per process); past it, 429 at once
    cors_origins: str = ""  # comma-separated origins allowed by CORS; empty = CORS off
    ui: bool = True  # the browser page at / and /ui
    fast_http: bool = True  # upstream HTTP/1.1 over upstream/transport.py; false: httpx's default transport
    # Days the proxy keeps usage rows and stored responses (0: no time limit; row caps still hold, see
    # store/retention.py); `cfai serve` prunes at start-up and hourly, `cfai usage --prune` at once.
    usage_retention_days: int = 90
    responses_retention_days: int = 30
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    # alias -> the model that serves it when a chat/Responses request carries images (core.catalog)
    vision_aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VISION_ALIASES))
    routing: RoutingConfig = field(default_factory=_no_routing)  # [routing], [upstreams.*], [routes]
    config_dir: Path = Path(".")
    data_dir: Path = Path(".")
    offline: bool = False

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "cfai.db"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def require_credentials(self) -> tuple[str, str]:
        if self.offline:
            return OFFLINE_ACCOUNT_ID, "offline"
        missing = [name for name, value in (("CLOUDFLARE_ACCOUNT_ID", self.account_id),
                                            ("CLOUDFLARE_API_TOKEN", self.api_token)) if not value]
        if missing:
            raise ConfigError(
                f"Missing {' and '.join(missing)}. Export them, or run "
                "`cfai config set account_id <id>` and `cfai config set api_token <token>`; "
                "or try cfai without an account with --offline."
            )
        assert self.account_id and self.api_token
        return self.account_id, self.api_token

    def as_offline(self) -> Settings:
        return replace(self, offline=True, api_base=OFFLINE_API_BASE)


def directories(environ: Mapping[str, str]) -> tuple[Path, Path]:
    home = environ.get("CFAI_HOME")
    if home:
        path = Path(home).expanduser()
        return path, path
    import platformdirs

    return Path(platformdirs.user_config_dir("cfai")), Path(platformdirs.user_data_dir("cfai"))


def coerce(key: str, value: Any, source: str) -> Any:
    """A setting's value in its type, or a ConfigError naming where the bad value came from."""
    kind = _FIELDS[key][1]
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value.strip()
        number = kind(value)
        if isinstance(number, float) and (not math.isfinite(number) or number <= 0):
            raise ValueError(value)
        if isinstance(number, int) and number < 0:
            raise ValueError(value)
        return number
    except (TypeError, ValueError):
        raise ConfigError(f"Invalid value for {key} in {source}: {value!r} (expected {kind.__name__}).") from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}") from None


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (`overrides`, None values ignored), environment, config file and defaults."""
    env = os.environ if environ is None else environ
    config_dir, data_dir = directories(env)
    file_values = read_config_file(config_dir / "config.toml")
    values: dict[str, Any] = {}
    for key, (env_name, _kind) in _FIELDS.items():
        if key in file_values:
            values[key] = coerce(key, file_values[key], str(config_dir / "config.toml"))
        if env_name and env.get(env_name):
            values[key] = coerce(key, env[env_name], f"${env_name}")
        if overrides and overrides.get(key) is not None:
            values[key] = coerce(key, overrides[key], "the command line")
    aliases = dict(DEFAULT_ALIASES)
    file_aliases = file_values.get("aliases", {})
    if not isinstance(file_aliases, dict) or not all(isinstance(v, str) for v in file_aliases.values()):
        raise ConfigError(f"[aliases] in {config_dir / 'config.toml'} must map names to model ids (strings).")
    aliases.update(file_aliases)
    vision_aliases = load_vision_aliases(file_values, aliases, str(config_dir / "config.toml"))
    values["api_base"] = values.get("api_base", DEFAULT_API_BASE).rstrip("/")
    from cfai_cli.core.routing import parse_routing, with_secrets

    routing = with_secrets(parse_routing(file_values, source=str(config_dir / "config.toml")), env)
    settings = Settings(**values, aliases=aliases, vision_aliases=vision_aliases, routing=routing,
                        config_dir=config_dir, data_dir=data_dir)
    if overrides and overrides.get("offline"):
        settings = settings.as_offline()
    return settings


def _vision_alias_error(name: str, target: Any, aliases: Mapping[str, str]) -> str | None:
    """What is wrong with one [vision_aliases] entry, or None."""
    if name not in aliases:
        return (f"{name!r} is not an alias; a vision alias only replaces an alias's model for requests with "
                f"images, so add [aliases] {name} first")
    if not isinstance(target, str):
        return f"expected a Workers AI model id such as '@cf/mistralai/mistral-small-3.1-24b-instruct', got {target!r}"
    try:
        validate_model_id(target.strip())
    except InvalidRequest as exc:
        return exc.message
    return None


def load_vision_aliases(file_values: Mapping[str, Any], aliases: Mapping[str, str], source: str) -> dict[str, str]:
    """DEFAULT_VISION_ALIASES with the file's [vision_aliases] merged over them, each entry checked."""
    table = file_values.get("vision_aliases", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[vision_aliases] in {source} must be a table mapping alias names to Workers AI ids.")
    merged = dict(DEFAULT_VISION_ALIASES)
    for name, target in table.items():
        problem = _vision_alias_error(name, target, aliases)
        if problem:
            raise ConfigError(f"[vision_aliases] {name} in {source}: {problem}.")
        merged[name] = target.strip()
    return merged


# ---- writing the config file -----------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table (inside a list)
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, date | time):
        return value.isoformat()  # a TOML date or time stays one
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
                         for c in str(value)) + '"'


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_key(key: str) -> str:
    bare = bool(key) and key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def dump_toml(data: Mapping[str, Any], _path: tuple[str, ...] = ()) -> str:
    """TOML for what `tomllib` read: scalars, lists and nested tables, so rewriting the file keeps them all."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    if _path and (lines or not any(isinstance(v, Mapping) for v in data.values())):
        lines.insert(0, f"\n[{'.'.join(_toml_key(p) for p in _path)}]")
    text = "\n".join(lines) + ("\n" if lines else "")
    for table, entries in data.items():
        if isinstance(entries, Mapping):
            text += dump_toml(entries, (*_path, table))
    return text


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (0600), so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def set_config_value(path: Path, key: str, value: str | None) -> dict[str, Any]:
    """Set (or with None, remove) one key in the config file; returns the new file contents."""
    data = read_config_file(path)
    if key.startswith("aliases."):
        name = key.split(".", 1)[1]
        if not name:
            raise ConfigError("Use aliases.<name>, e.g. `cfai config set aliases.fast @cf/meta/llama-3.1-8b-instruct`.")
        table = dict(data.get("aliases", {}))
        if value is None:
            if name in data.get("vision_aliases", {}) and name not in DEFAULT_ALIASES:
                raise ConfigError(f"vision_aliases.{name} needs aliases.{name}; unset vision_aliases.{name} first.")
            table.pop(name, None)
        else:
            try:
                table[name] = validate_model_id(value)
            except InvalidRequest as exc:  # a bad id is a config problem here
                raise ConfigError(exc.message) from None
        data["aliases"] = table
    elif key.startswith("vision_aliases."):
        name = key.split(".", 1)[1]
        table = dict(data.get("vision_aliases", {}))
        if value is None:
            table.pop(name, None)
        else:
            aliases = {**DEFAULT_ALIASES, **data.get("aliases", {})}
            problem = _vision_alias_error(name, value, aliases) if name else "give the alias's name"
            if problem:
                raise ConfigError(f"vision_aliases.{name}: {problem}.")
            table[name] = value.strip()
        data["vision_aliases"] = table
    elif key in _FIELDS:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = coerce(key, value, "the command line")
    else:
        raise ConfigError(f"Unknown setting {key!r}. Known settings: {', '.join(SETTABLE_KEYS)}.")
    write_private(path, dump_toml(data))
    return data


def public_view(settings: Settings) -> dict[str, Any]:
    """Settings as shown to a person: the token masked, paths as strings."""
    out: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "api_token":
            value = mask_secret(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        elif f.name == "routing":
            value = value.public()
        out[f.name] = value
    out["config_file"] = str(settings.config_file)
    return out


def mask_secret(value: str | None) -> str | None:
    if not value:
        return None
    return f"{value[:4]}…{value[-2:]}" if len(value) > 12 else "****"
