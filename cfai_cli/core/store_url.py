"""The `[store]` table: which database holds the gateway's tables (keys, usage, responses, ...).

Pure: stdlib only. No url (the default) keeps them in the SQLite file cfai.db in the data directory, as a single
host always has; `postgresql://user@host:port/db` puts them in a PostgreSQL database several replicas share
(store.sql). Shared tables need shared limits: such a store requires `[coordination] url` (Redis) as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the gateway's state lives: SQLite in the data directory, or a PostgreSQL URL."""

    url: str | None = None  # None: cfai.db in the data directory


def split_service_url(text: str, schemes: tuple[str, ...], *, shape: str, scheme_error: str) -> SplitResult:
    """A backend's URL split, its port checked (ValueError "must be a `shape` URL", never echoing a password),
    its scheme one of `schemes` (else ValueError `scheme_error`). Shared by [store] and [coordination]."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  # a bad port raises here
    except ValueError:
        raise ValueError(f"must be a {shape} URL") from None
    if parts.scheme not in schemes:
        raise ValueError(scheme_error)
    return parts


def check_store_url(value: str) -> str:
    """A postgresql:// URL naming a host and a database (ValueError saying what is wrong, never the password)."""
    text = value.strip()
    parts = split_service_url(text, SCHEMES, shape="postgresql://user@host:port/database",
                              scheme_error="must be a URL starting with postgresql:// (no url: the SQLite file "
                                           "cfai.db)")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("must name a host: postgresql://user@host:port/database")
    if parts.path.strip("/") == "":
        raise ValueError("must name a database: postgresql://user@host:port/database")
    return text


def without_password(url: str | None) -> str | None:
    """The URL to show a person (`cfai config show`): its password, if it has one, replaced by ****."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:****@{host}").geturl()


def shared_store_problem(store_url: str | None, coordination_url: str | None) -> str | None:
    """Why this store/coordination pair cannot run a gateway (None: it can)."""
    if store_url and not coordination_url:
        return ("[store] url is a PostgreSQL database, which several replicas share; their rate limits, budget "
                "holds and cooldowns must then be shared too, so [coordination] url (a redis:// URL) is required "
                "as well (docs/database.md)")
    return None
