"""The settings with a shape of their own (account_id, api_base), as pydantic types: the config file's tables
check the same kind of value with them, and settings.file checks one value from the environment or the
command line with them alone, without building the whole file's schema (core.config_file, ~35 ms of every
command's start-up). Pure: pydantic, the standard library and core.catalog.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator

from cfai_cli.core.catalog import is_account_id


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


def _account_id(value: str) -> str:
    if not is_account_id(value.strip()):
        raise ValueError("must be the 32-character id of the Cloudflare account")
    return value.strip()


def _account_shape(value: str) -> str:
    """A real Cloudflare account id (32 hex digits): what `cfai config set` writes. The loose `_account_id` is
    what reaches a URL safely (test ids, the emulator's "offline"), all that loading asks."""
    value = value.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise ValueError("must be the 32-character id of the Cloudflare account (32 hex digits, on the "
                         "dashboard's Workers AI page)")
    return value


AccountId = Annotated[str, AfterValidator(_account_id)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
# Top-level settings with a shape of their own, checked as the tables check the same kind of value
# (settings.file builds the top-level keys from the Settings dataclass and takes these types for them).
SHAPED: dict[str, Any] = {"account_id": AccountId, "api_base": HttpUrl}
SHAPED_STRICT: dict[str, Any] = {**SHAPED, "account_id": Annotated[str, AfterValidator(_account_shape)]}
