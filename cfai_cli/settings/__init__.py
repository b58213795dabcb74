"""Typed settings, loaded once by `load_settings`, with one precedence for every setting:

    command-line flag > environment > config file > default

Environment: CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CFAI_API_BASE, CFAI_TIMEOUT, CFAI_MODEL, CFAI_HOME,
CFAI_USAGE_RETENTION_DAYS, CFAI_RESPONSES_RETENTION_DAYS, CFAI_LOG (each field's `env` below is the one list), and
CFAI_OFFLINE (every command answers from the emulator; `cfai --offline` and each command's --offline are its flags).
Where each value came from is kept in `Settings.origins` (`cfai config show`).
Config file: `config.toml` in the config directory (CFAI_HOME if set, else the platform's user config dir),
created 0600 because it may hold the API token; its schema is settings.file (pydantic, imported only when
settings are loaded, so `cfai --help` stays cheap). Nothing is read at import time. Imports: stdlib, errors, core.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfai_cli.core.catalog import DEFAULT_ALIASES, DEFAULT_CHAT_MODEL, DEFAULT_VISION_ALIASES
from cfai_cli.errors import ConfigError

if TYPE_CHECKING:  # routing is imported when settings are loaded, not by every `cfai --help`
    from cfai_cli.core.blobs import BlobsConfig
    from cfai_cli.core.cache import CacheConfig
    from cfai_cli.core.coordination import CoordinationConfig
    from cfai_cli.core.routing import RoutingConfig
    from cfai_cli.core.store_url import StoreConfig


def _no_routing() -> RoutingConfig:
    from cfai_cli.core.routing import RoutingConfig

    return RoutingConfig()


def _no_cache() -> CacheConfig:
    from cfai_cli.core.cache import CacheConfig

    return CacheConfig()


def _no_blobs() -> BlobsConfig:
    from cfai_cli.core.blobs import BlobsConfig

    return BlobsConfig()


def _no_coordination() -> CoordinationConfig:
    from cfai_cli.core.coordination import CoordinationConfig

    return CoordinationConfig()


COORDINATION_URL_ENV = "CFAI_COORDINATION_URL"


def _no_store() -> StoreConfig:
    from cfai_cli.core.store_url import StoreConfig

    return StoreConfig()


def _setting(default: Any, env: str | None = None, *, secret: bool = False) -> Any:
    """A field a person sets (config file, `cfai config set`, maybe an environment variable)."""
    return field(default=default, repr=not secret, metadata={"setting": True, "env": env})


DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
OFFLINE_API_BASE = "http://offline.cfai.invalid/client/v4"
OFFLINE_ACCOUNT_ID = "offline"
BLOBS_URL_ENV = "CFAI_BLOBS_URL"
STORE_URL_ENV = "CFAI_STORE_URL"

@dataclass(frozen=True)
class Settings:
    """Every setting of a command, resolved from flags, the environment and the config file (load_settings)."""

    account_id: str | None = _setting(None, "CLOUDFLARE_ACCOUNT_ID")
    api_token: str | None = _setting(None, "CLOUDFLARE_API_TOKEN", secret=True)
    api_base: str = _setting(DEFAULT_API_BASE, "CFAI_API_BASE")
    timeout: float = _setting(300.0, "CFAI_TIMEOUT")
    default_model: str = _setting(DEFAULT_CHAT_MODEL, "CFAI_MODEL")
    default_max_tokens: int = _setting(4096)
    max_retries: int = _setting(3)
    max_body_mb: float = _setting(25.0)
    max_json_mb: float = _setting(16.0)
    body_timeout: float = _setting(30.0)  # seconds from a request's head to the end of its body (408 beyond)
    header_timeout: float = _setting(10.0)  # seconds for a request head to arrive on a connection (closed beyond)
    allow_private_fetch: bool = _setting(False)
    image_ttl_hours: float = _setting(24.0)
    image_url_auth: bool = _setting(False)
    max_concurrency: int = _setting(512)
    max_connections: int = _setting(512)  # the upstream connection pool: as large as the cap, so the cap is what limits
    max_in_flight_per_key: int = _setting(64)  # one key's requests in flight (per process); past it, 429 at once
    cors_origins: str = _setting("")  # comma-separated origins allowed by CORS; empty = CORS off
    ui: bool = _setting(True)  # the browser page at / and /ui
    fast_http: bool = _setting(True)  # upstream HTTP/1.1 over upstream/transport.py; false: httpx's default transport
    # Days the proxy keeps usage rows and stored responses (0: no time limit; row caps still hold, see
    # store/retention.py); `cfai serve` prunes at start-up and hourly, `cfai usage --prune` at once.
    usage_retention_days: int = _setting(90, "CFAI_USAGE_RETENTION_DAYS")
    responses_retention_days: int = _setting(30, "CFAI_RESPONSES_RETENTION_DAYS")
    # The exchange log of `cfai chat` (logs.db, `cfai logs`): on or off, the newest rows kept (0: no cap),
    # and a time limit (0: none). Pruned as each exchange is written (store/exchanges.py).
    log: bool = _setting(True, "CFAI_LOG")
    log_max_rows: int = _setting(10_000)
    log_retention_days: int = _setting(0)
    # The Files and Batch API (docs/batch.md): the largest upload, requests per batch file, and how many lines
    # run at once in one batch and in all of this process's batches together.
    max_file_mb: float = _setting(100.0)
    # What one key's uploads may hold together (batch and user_data files; batch outputs do not count).
    max_files_per_key: int = _setting(10_000)
    max_stored_files_mb: float = _setting(10_000.0)
    batch_max_lines: int = _setting(50000)
    batch_concurrency: int = _setting(4)
    batch_max_concurrency: int = _setting(16)
    # Workers AI's async queue under batches (docs/batch.md): on or off, the first wait between polls of a queued
    # job (doubling, with jitter) and its ceiling, and how many failed polls in a row fail the job's lines.
    batch_queue: bool = _setting(True)
    batch_queue_poll: float = _setting(1.0)
    batch_queue_poll_max: float = _setting(30.0)
    batch_queue_poll_failures: int = _setting(10)
    # Days finished batches (their lines and output files) and expired uploads are kept (0: for ever).
    batch_retention_days: int = _setting(30)
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    # alias -> the model that serves it when a chat/Responses request carries images (core.catalog)
    vision_aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VISION_ALIASES))
    routing: RoutingConfig = field(default_factory=_no_routing)  # [routing], [upstreams.*], [routes]
    cache: CacheConfig = field(default_factory=_no_cache)  # [cache]: the response cache (core.cache)
    blobs: BlobsConfig = field(default_factory=_no_blobs)  # [blobs]: hosted images on S3 (core.blobs); CFAI_BLOBS_URL
    # [coordination]: rate limits shared by replicas in Redis ($CFAI_COORDINATION_URL overrides its url)
    coordination: CoordinationConfig = field(default_factory=_no_coordination)
    store: StoreConfig = field(default_factory=_no_store)  # [store]: the database (store.sql); CFAI_STORE_URL
    config_dir: Path = Path(".")
    data_dir: Path = Path(".")
    offline: bool = False
    # setting name -> "flag", "environment ($NAME)", "file" or "default" (`cfai config show`); not a setting
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def database(self) -> Path:
        return self.data_dir / "cfai.db"

    @property
    def storage(self) -> Path | str:
        """What the stores open (store.sql.open_database): [store] url, else the SQLite file cfai.db."""
        return self.store.url or self.database

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs.db"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

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


SETTINGS: tuple[Field[Any], ...] = tuple(f for f in fields(Settings) if f.metadata.get("setting"))
"""The scalar settings: their names are the config file's top-level keys; `env` names their variable."""
SETTABLE_KEYS = (*(f.name for f in SETTINGS), "aliases.<name>", "vision_aliases.<name>")
OFFLINE_ENV = "CFAI_OFFLINE"


def offline_from_environ(environ: Mapping[str, str]) -> bool:
    """CFAI_OFFLINE=1 (or true/yes/on): every command answers from the emulator. 0/false/no/off/empty: not."""
    value = environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"Invalid value for ${OFFLINE_ENV}: {environ[OFFLINE_ENV]!r} (expected 1 or 0).")


def directories(environ: Mapping[str, str]) -> tuple[Path, Path]:
    home = environ.get("CFAI_HOME")
    if home:
        path = Path(home).expanduser()
        return path, path
    import platformdirs

    return Path(platformdirs.user_config_dir("cfai")), Path(platformdirs.user_data_dir("cfai"))


def store_location(environ: Mapping[str, str] | None = None) -> Path | str:
    """Where the stores live, read on its own ($CFAI_STORE_URL, else [store] url, else cfai.db): for the commands
    that need only the database, so another bad setting does not stop them (a broken config file still does:
    its [store] url cannot be known, and guessing the SQLite file would put keys in the wrong database)."""
    env = os.environ if environ is None else environ
    config_dir, data_dir = directories(env)
    from cfai_cli.settings.file import store_url

    if env.get(STORE_URL_ENV):
        return store_url(env[STORE_URL_ENV], f"${STORE_URL_ENV}")
    path = config_dir / "config.toml"
    table = read_config_file(path).get("store")
    url = table.get("url") if isinstance(table, dict) else None
    if url is None:
        return data_dir / "cfai.db"
    if not isinstance(url, str):
        raise ConfigError(f"Invalid value for store.url in {path}: it must be a postgresql:// URL string.")
    return store_url(url, str(path))


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *,
                  use_file: bool = True) -> Settings:
    """Settings from flags (`overrides`, None values ignored), environment, config file and defaults, in that
    order of precedence (the module docstring). `offline` among the overrides, or CFAI_OFFLINE, switches to the
    emulator. `use_file=False` leaves the config file out (`cfai config show` of a broken file)."""
    from cfai_cli.settings.file import SettingsFile, coerce, read_settings_file

    env = os.environ if environ is None else environ
    config_dir, data_dir = directories(env)
    found = read_settings_file(config_dir / "config.toml") if use_file else SettingsFile.empty()
    values = dict(found.values)
    origins = {name: "file" for name in values}
    for spec in SETTINGS:
        env_name = spec.metadata["env"]
        if env_name and env.get(env_name):
            values[spec.name] = coerce(spec.name, env[env_name], f"${env_name}")
            origins[spec.name] = f"environment (${env_name})"
        if overrides and overrides.get(spec.name) is not None:
            values[spec.name] = coerce(spec.name, overrides[spec.name], "the command line")
            origins[spec.name] = "flag"
    values["api_base"] = values.get("api_base", DEFAULT_API_BASE).rstrip("/")
    from cfai_cli.core.routing import with_secrets

    for name in ("aliases", "vision_aliases", "routing", "cache", "blobs", "coordination", "store"):
        origins[name] = "file" if name in found.tables else "default"
    blobs = found.blobs
    if env.get(BLOBS_URL_ENV):  # the one [blobs] key a deployment sets per environment (a bucket per stage)
        from cfai_cli.settings.file import blobs_url

        blobs = replace(blobs, url=blobs_url(env[BLOBS_URL_ENV], f"${BLOBS_URL_ENV}"))
        origins["blobs"] = f"environment (${BLOBS_URL_ENV})"
    coordination = found.coordination
    if env.get(COORDINATION_URL_ENV):
        coordination = _coordination_from_env(coordination, env[COORDINATION_URL_ENV])
        origins["coordination"] = f"environment (${COORDINATION_URL_ENV})"
    store = found.store
    if env.get(STORE_URL_ENV):  # a deployment's database, often with its password: from a secret, not the file
        from cfai_cli.settings.file import store_url

        store = replace(store, url=store_url(env[STORE_URL_ENV], f"${STORE_URL_ENV}"))
        origins["store"] = f"environment (${STORE_URL_ENV})"
    origins["config_dir"] = origins["data_dir"] = "environment ($CFAI_HOME)" if env.get("CFAI_HOME") else "default"
    offline_flag = bool(overrides and overrides.get("offline"))
    offline = offline_flag or offline_from_environ(env)
    origins["offline"] = "flag" if offline_flag else f"environment (${OFFLINE_ENV})" if offline else "default"
    origins = {spec.name: origins.get(spec.name, "default") for spec in fields(Settings) if spec.name != "origins"}
    settings = Settings(**values, aliases=found.aliases, vision_aliases=found.vision_aliases,
                        routing=with_secrets(found.routing, env), cache=found.cache, blobs=blobs,
                        coordination=coordination, store=store, config_dir=config_dir,
                        data_dir=data_dir, origins=origins)
    if offline:
        settings = settings.as_offline()
    return settings


def _coordination_from_env(found: CoordinationConfig, url: str) -> CoordinationConfig:
    from cfai_cli.core.coordination import check_redis_url

    try:
        return replace(found, url=check_redis_url(url))
    except ValueError as exc:
        raise ConfigError(f"Invalid value for ${COORDINATION_URL_ENV}: {exc}.") from None


def set_config_value(path: Path, key: str, value: str | None) -> dict[str, Any]:
    """Set (or with None, remove) one key in the config file, keeping the rest; returns the new contents."""
    from cfai_cli.settings.write import set_config_value as write

    return write(path, key, value)


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (0600), so a crash never leaves half a file."""
    from cfai_cli.settings.write import write_private as write

    write(path, text)


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file as TOML data, unchecked ({} when there is none)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}") from None
    import tomllib  # only for a file there is: its regexes cost a few ms of every command's start-up

    try:
        with fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}. Fix it in an editor (`cfai config show` and "
                          "`cfai config path` still work; `cfai config set` needs a readable file).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {path}: {exc}") from None


def public_view(settings: Settings) -> dict[str, Any]:
    """Settings as shown to a person: the token masked, paths as strings."""
    out: dict[str, Any] = {}
    for f in fields(settings):
        if f.name == "origins":
            continue
        value = getattr(settings, f.name)
        if f.name == "api_token":
            value = mask_secret(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        elif f.name == "routing":
            value = value.public()
        elif f.name == "coordination":
            value = {"url": value.url and _redacted(value.url), "on_failure": value.on_failure}
        elif f.name == "cache":
            value = {name: sorted(v) if isinstance(v, frozenset) else v for name, v in asdict(value).items()}
        elif f.name == "blobs":
            value = asdict(value)
        elif f.name == "store":
            from cfai_cli.core.store_url import without_password

            value = {"url": without_password(value.url)}
        out[f.name] = value
    out["config_file"] = str(settings.config_file)
    return out


def _redacted(url: str) -> str:
    """A URL as shown: its password masked."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}****@{host}"))


def mask_secret(value: str | None) -> str | None:
    if not value:
        return None
    return f"{value[:4]}…{value[-2:]}" if len(value) > 12 else "****"
