"""The admin API's request bodies (cfai's own, not OpenAI's): create a proxy API key, change its policy.

Pure: pydantic, the standard library, core and errors. The fields are `cfai keygen`'s flags, so the routes and
the CLI describe one policy. Unknown fields are refused by name (a typo such as "scope" must not mint a key
with the default scopes), without echoing their values: a client might paste a secret into the wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cfai_cli.core.printable import printable
from cfai_cli.errors import InvalidRequest

# The key scopes (store.keys.SCOPES, checked equal by a test); "all" in a request means every one of them.
Scope = Literal["chat", "embeddings", "images", "audio", "models", "admin", "all"]
MAX_MODEL_PATTERNS = 100

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^,\s]+$")]
Limit = Annotated[int, Field(ge=1, le=1_000_000_000)]
# `cfai keygen --expires`: a number and a unit (minutes, hours, days, weeks).
Duration = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}[mhdw]$")]
# Budgets (docs/cost.md): neurons per UTC day, USD at list price per calendar month; more than zero.
Neurons = Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
Dollars = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
Stamp = Annotated[int, Field(ge=0, le=253_402_300_799)]  # up to the year 9999


class _Body(BaseModel):
    # defer_build: the schemas are built on first use, not by every import (`cfai serve` start-up)
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)  # unknown fields: `refuse_unknown` first


class KeyCreate(_Body):
    """POST /v1/admin/keys. Omitted fields take `cfai keygen`'s defaults."""

    name: Name = "default"
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=8)] | None = Field(
        None, description="Scopes the key may use (default: every one but admin; 'all' for every one).")
    models: Annotated[list[Pattern], Field(max_length=MAX_MODEL_PATTERNS)] = Field(
        default_factory=list, description="Shell-style model patterns the key may use (empty: any model).")
    rpm: Limit | None = Field(None, description="Requests per minute.")
    rpd: Limit | None = Field(None, description="Requests per day.")
    tpm: Limit | None = Field(None, description="Tokens per minute.")
    expires_in: Duration | None = Field(None, description="Expire after e.g. 30d, 12h, 90m or 2w.")
    expires_at: Stamp | None = Field(None, description="Expire at this Unix time (instead of expires_in).")
    cache: bool = Field(False, description="Its requests use the response cache without asking.")
    budget_neurons_per_day: Neurons | None = Field(
        None, description="Refuse the key's requests (429 insufficient_quota) once it has spent this many neurons "
                          "since 00:00 UTC.")
    budget_usd_per_month: Dollars | None = Field(
        None, description="Refuse the key's requests once it has spent this many US dollars (neurons at list "
                          "price) this calendar month (UTC).")


class KeyUpdate(_Body):
    """PATCH /v1/admin/keys/{id}: the fields sent are changed, the others kept; null resets a field to its
    default (scopes: every one but admin; models: any; rpm, rpd, tpm, budgets: no limit; expiry: never; cache:
    off)."""

    name: Name = "default"  # never null: a key always has a name
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=8)] | None = None
    models: Annotated[list[Pattern], Field(max_length=MAX_MODEL_PATTERNS)] | None = None
    rpm: Limit | None = None
    rpd: Limit | None = None
    tpm: Limit | None = None
    expires_in: Duration | None = None
    expires_at: Stamp | None = None
    cache: bool | None = None
    budget_neurons_per_day: Neurons | None = None
    budget_usd_per_month: Dollars | None = None


def refuse_unknown(model: type[BaseModel], data: Mapping[str, Any]) -> None:
    """A 400 naming the first field `model` does not have (named only: its value is never repeated)."""
    unknown = sorted(name for name in data if name not in model.model_fields)
    if unknown:
        name = printable(unknown[0], 64)
        known = ", ".join(model.model_fields)
        raise InvalidRequest(f"Unknown parameter: '{name}'. This endpoint takes: {known}.", param=name,
                             code="unknown_parameter")


DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int:
    """'30d' -> 2592000 (a Duration already validated)."""
    return int(text[:-1]) * DURATION_UNITS[text[-1]]
