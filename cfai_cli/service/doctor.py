"""`cfai doctor`'s checks: the config file, the data directory's permissions, the key store, a shared gateway's
Redis and S3 bucket (when configured), and with credentials the token (Cloudflare's token verify) and its
Workers AI access (one small catalogue page).

Imports stdlib, httpx (through upstream), errors, settings, store and upstream. Each check is a `Check` with a
fix for a person when it fails; nothing here prints. Offline, the token checks go to the emulator.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from cfai_cli.errors import (
    CfaiError,
    ConfigError,
    ExitCode,
    PermissionDenied,
    UpstreamAuthError,
    UpstreamError,
)
from cfai_cli.settings import OFFLINE_ACCOUNT_ID, OFFLINE_API_BASE, Settings, load_settings
from cfai_cli.upstream.lean import Lean

Status = Literal["ok", "fail", "skip"]
TOKEN_HELP = ("create a token with the \"Workers AI\" template (Account > Workers AI > Read and Edit) at "
              "https://dash.cloudflare.com/profile/api-tokens, then `cfai config set api_token`")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    exit_code: ExitCode = ExitCode.CONFIG  # what `cfai doctor` exits with when this is the first failure

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def check_config(environ: Mapping[str, str] | None, overrides: Mapping[str, Any]) -> tuple[Check, Settings | None]:
    try:
        settings = load_settings(overrides, environ)
    except ConfigError as err:
        return Check("config", "fail", err.message, "fix the value named above; `cfai config show` still works"), None
    where = settings.config_file
    detail = f"{where} parses, no unknown keys" if where.exists() else f"no config file ({where}): defaults apply"
    return Check("config", "ok", detail), settings


def check_permissions(settings: Settings) -> Check:
    """cfai makes its directories 0700 and its files 0600 (they hold the token, keys' hashes, usage)."""
    loose: list[str] = []
    fixes: list[str] = []
    for directory in dict.fromkeys((settings.config_dir, settings.data_dir, settings.images_dir)):
        try:
            if not directory.is_dir():
                continue
            if _loose(directory):
                loose.append(f"{directory} is {_mode(directory)}")
                fixes.append(f"chmod 700 {directory}")
            for path in sorted(directory.iterdir()):
                if path.is_file() and not path.is_symlink() and _loose(path):
                    loose.append(f"{path} is {_mode(path)}")
                    fixes.append(f"chmod 600 {path}")
        except OSError as exc:  # not ours to read: cfai could not use it either
            return Check("permissions", "fail", f"cannot read {directory}: {exc.strerror or exc}",
                         f"make it yours: chown -R \"$USER\" {directory} && chmod 700 {directory}")
    if loose:
        return Check("permissions", "fail", "readable by others: " + "; ".join(loose), " && ".join(fixes))
    return Check("permissions", "ok", f"{settings.data_dir}: directories 0700, files 0600 (or not created yet)")


def _loose(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode)).replace("0o", "0")


def check_key_store(settings: Settings) -> Check:
    from cfai_cli.store.keys import schema_problem

    if settings.store.url:
        return _check_shared_store(settings.store.url)
    database = settings.database
    if not database.exists():
        return Check("key store", "ok", f"no database yet ({database}; `cfai keygen` or `cfai serve` make it)")
    problem = schema_problem(database)
    if problem:
        return Check("key store", "fail", f"{database}: {problem}",
                     "run `cfai keys list` (it brings the table up to date), or move the file aside")
    return Check("key store", "ok", f"{database} opens, schema current")


def _check_shared_store(url: str) -> Check:
    """[store] url: the PostgreSQL database answers, and its schema is one this cfai knows."""
    from cfai_cli.errors import ConfigError
    from cfai_cli.store.migrations import LATEST, recorded
    from cfai_cli.store.sql import open_database

    db = open_database(url)
    try:
        version = recorded(db)
    except ConfigError as exc:
        return Check("key store", "fail", str(exc), "check [store] url / CFAI_STORE_URL and that the server is up")
    if version > LATEST:
        return Check("key store", "fail", f"{db.label}: schema {version} is newer than this cfai ({LATEST})",
                     "upgrade cfai")
    pending = f", {LATEST - version} migration(s) to apply (`cfai db migrate`)" if version < LATEST else ""
    return Check("key store", "ok", f"PostgreSQL {db.label} answers, schema {version}{pending}")


async def check_shared(settings: Settings) -> list[Check]:
    """A shared gateway's other backends, each when configured: the [coordination] Redis answers a PING, the [blobs]
    bucket answers a HEAD (of an object that need not exist). Named by host:port or bucket, never a URL."""
    checks: list[Check] = []
    if settings.coordination.url:
        checks.append(await _check_redis(settings.coordination.url))
    if settings.blobs.url:
        checks.append(await _check_blobs(settings))
    return checks


async def _check_redis(url: str) -> Check:
    from cfai_cli.core.coordination import redis_place
    from cfai_cli.store.redis_limits import connect
    from cfai_cli.store.redis_outage import errors

    place = redis_place(url)
    client = connect(url)
    try:
        await client.ping()
    except errors() as exc:
        return Check("coordination", "fail", f"cannot reach Redis at {place}: {type(exc).__name__}: {exc}",
                     "check [coordination] url / CFAI_COORDINATION_URL and that Redis is up", ExitCode.UPSTREAM)
    finally:
        await client.aclose()
    return Check("coordination", "ok", f"Redis at {place} answers")


async def _check_blobs(settings: Settings) -> Check:
    where = settings.blobs.url or ""
    try:
        from cfai_cli.store.blobs_s3 import S3Blobs, s3_blobs
    except ImportError as exc:
        return Check("blobs", "fail", f"[blobs] url is an s3:// URL, but {exc.name} is not installed",
                     "pip install obstore")
    try:
        store = s3_blobs(settings.blobs, "images")
        assert isinstance(store, S3Blobs)
        await store.probe()
    except CfaiError as exc:  # BlobsUnavailable (unreachable, refused), ConfigError (a bad url)
        return Check("blobs", "fail", str(exc), "check [blobs] url/endpoint/region, the AWS_* credentials and that "
                     "the bucket exists", ExitCode.UPSTREAM)
    return Check("blobs", "ok", f"{where} answers")


async def check_account(settings: Settings, transport: httpx.AsyncBaseTransport | Lean | None) -> list[Check]:
    """The token is valid, and can read Workers AI on the account."""
    if not settings.offline and not (settings.account_id and settings.api_token):
        missing = " and ".join(n for n, v in (("CLOUDFLARE_ACCOUNT_ID", settings.account_id),
                                              ("CLOUDFLARE_API_TOKEN", settings.api_token)) if not v)
        return [Check("credentials", "fail", f"{missing} not set",
                      "`cfai config set account_id ID` and `cfai config set api_token` (or export them); "
                      "or try cfai without an account: `cfai --offline ...`"),
                Check("token", "skip", "no credentials"), Check("workers ai", "skip", "no credentials")]
    from cfai_cli.upstream.workers import WorkersAIClient

    account, token = settings.require_credentials()
    if settings.offline and transport is None:
        from cfai_cli.service.context import offline_transport

        transport = offline_transport()
    where = "the offline emulator" if settings.offline else settings.api_base
    try:
        client = WorkersAIClient(account_id=OFFLINE_ACCOUNT_ID if settings.offline else account, api_token=token,
                                 api_base=OFFLINE_API_BASE if settings.offline else settings.api_base,
                                 timeout=min(settings.timeout, 30.0), max_retries=1, transport=transport,
                                 fast_http=settings.fast_http)
    except ConfigError as err:
        return [Check("credentials", "fail", err.message, "`cfai config set account_id ID` (32 hex digits)"),
                Check("token", "skip", "no usable account id"), Check("workers ai", "skip", "no usable account id")]
    origin = settings.origins.get("api_token", "default")
    checks = [Check("credentials", "ok", "offline: the emulator's account and token" if settings.offline
                    else f"account {account[:6]}… and a token (from the {origin})")]
    try:
        active = False
        try:
            result = await client.verify_token()
            status = result.get("status") if isinstance(result, dict) else None
            active = status == "active"
            checks.append(Check("token", "ok", f"{where} says the token is active") if active
                          else Check("token", "fail", f"the token is {status or 'not active'}", TOKEN_HELP))
        except CfaiError as err:
            checks.append(_failed("token", err, where))
        try:
            models = await client.models_page(per_page=1)
            count = len(models) if isinstance(models, list) else 0
            checks.append(Check("workers ai", "ok", f"the token can read the Workers AI catalogue ({count} model "
                                                    "on the first page)"))
        except (UpstreamAuthError, PermissionDenied) as err:
            # Cloudflare answers a valid token without Workers AI permission on this account with an
            # authentication error (10000) too: after an active verify, it is the permission or the account id
            checks.append(_no_access(err) if active else _failed("workers ai", err, where))
        except CfaiError as err:
            checks.append(_failed("workers ai", err, where))
    finally:
        await client.aclose()
    return checks


def _no_access(err: CfaiError) -> Check:
    return Check("workers ai", "fail", f"the token may not use Workers AI on this account ({err.message})",
                 "give the token Account > Workers AI > Read and Edit for this account, and check that "
                 "account_id is that account's (`cfai config get account_id`)")


def _failed(name: str, err: CfaiError, where: str) -> Check:
    if isinstance(err, UpstreamAuthError):
        return Check(name, "fail", f"Cloudflare rejected the token ({err.message})", TOKEN_HELP)
    if isinstance(err, PermissionDenied):
        return _no_access(err)
    if isinstance(err, UpstreamError):
        return Check(name, "fail", f"could not ask {where}: {err.message}",
                     "check the network, a proxy (HTTPS_PROXY) or api_base; then run `cfai doctor` again",
                     err.exit_code)
    return Check(name, "fail", err.message, "check account_id (`cfai config get account_id`: the 32 hex digits of "
                                            "your account) and api_base (`cfai config get api_base`)", err.exit_code)


async def run_checks(overrides: Mapping[str, Any], *, environ: Mapping[str, str] | None = None,
                     transport: httpx.AsyncBaseTransport | None = None) -> list[Check]:
    config, settings = check_config(environ, overrides)
    if settings is None:  # the rest needs the paths: the environment's (CFAI_HOME) still say where they are
        from cfai_cli.settings import directories

        config_dir, data_dir = directories(os.environ if environ is None else environ)
        paths = Settings(config_dir=config_dir, data_dir=data_dir)
        return [config, check_permissions(paths), check_key_store(paths),
                Check("credentials", "skip", "the configuration does not load")]
    return [config, check_permissions(settings), check_key_store(settings), *await check_shared(settings),
            *await check_account(settings, transport)]


def exit_code(checks: list[Check]) -> ExitCode:
    """0 when nothing failed; else the first failure's (3 configuration or credentials, 5 unreachable, ...)."""
    return next((c.exit_code for c in checks if c.status == "fail"), ExitCode.OK)
