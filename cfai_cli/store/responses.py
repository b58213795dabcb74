"""Stored Responses: each response's JSON and its input items, in the same SQLite file as the keys.

Imports stdlib and store.db. `previous_response_id` rebuilds a conversation by walking the chain of
stored responses (their input items, then their output). Responses are kept `responses_retention_days`
(store.retention deletes older ones). The CLI's `--continue` remembers the last
response id per data directory in the small `cli_state` table.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfai_cli.core.caps import check_chain
from cfai_cli.store.sql import Database, Tx, open_database

Json = dict[str, Any]
# NULL (the CLI, a server without auth) matches NULL; store.sql spells it IS NOT DISTINCT FROM for PostgreSQL.
_OWNED = "owner IS ?"


@dataclass(frozen=True, slots=True)
class Chain:
    """A stored conversation: its items, its first response's id, the affinity its last turn was asked with."""

    items: list[Json]
    root: str
    affinity: str | None


class ResponseStore:
    """The responses table of the cfai database (created on first use, 0600 in a 0700 directory)."""

    def __init__(self, target: Path | str | Database) -> None:
        self.db = open_database(target)

    def _connect(self, *, write: bool = False) -> AbstractContextManager[Tx]:
        # Each write is one statement on one row: no read-check-write, so no lock across replicas.
        return self.db.transaction(write=write, lock=None)

    def save(self, response: Json, input_items: list[Json], *, owner: str | None = None,
             affinity: str | None = None) -> None:
        with self._connect(write=True) as conn:
            conn.execute(
                "INSERT INTO responses (id, created_at, previous_response_id, input_items, response, owner, affinity) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, "
                "previous_response_id = excluded.previous_response_id, input_items = excluded.input_items, "
                "response = excluded.response, owner = excluded.owner, affinity = excluded.affinity",
                (response["id"], int(response["created_at"]), response.get("previous_response_id"),
                 json.dumps(input_items, ensure_ascii=False), json.dumps(response, ensure_ascii=False), owner,
                 affinity),
            )

    def get(self, response_id: str, *, owner: str | None = None) -> tuple[Json, list[Json]] | None:
        """The stored response and its input items, or None (also when another key stored it)."""
        with self._connect() as conn:
            row = conn.execute(f"SELECT response, input_items FROM responses WHERE id = ? AND {_OWNED}",
                               (response_id, owner)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), json.loads(row[1])

    def delete(self, response_id: str, *, owner: str | None = None) -> bool:
        with self._connect(write=True) as conn:
            cur = conn.execute(f"DELETE FROM responses WHERE id = ? AND {_OWNED}", (response_id, owner))
        return cur.rowcount > 0

    def conversation(self, response_id: str, *, owner: str | None = None) -> list[Json] | None:
        """Every item of the conversation up to and including `response_id`'s output, or None if unknown."""
        found = self.chain(response_id, owner=owner)
        return None if found is None else found.items

    def chain(self, response_id: str, *, owner: str | None = None) -> Chain | None:
        """`conversation`'s items, the chain's first stored response (its root) and the x-session-affinity
        `response_id` was asked with; None if unknown."""
        turns: list[list[Json]] = []
        root, affinity = response_id, None
        current: str | None = response_id
        size = 0
        seen: set[str] = set()
        with self._connect() as conn:
            while current is not None and current not in seen:  # a loop written into the database ends here
                seen.add(current)
                row = conn.execute(f"SELECT response, input_items, affinity FROM responses WHERE id = ? AND {_OWNED}",
                                   (current, owner)).fetchone()
                if row is None:
                    if not turns:
                        return None
                    break  # an earlier turn was deleted: continue from what is left, as OpenAI does
                size += len(row[0]) + len(row[1])
                check_chain(len(turns) + 1, size)  # refused before loading more than the caps allow
                response, items = json.loads(row[0]), json.loads(row[1])
                # A failed turn's partial output is not something the model said: keep only its input.
                output = response.get("output", []) if response.get("status") != "failed" else []
                if not turns:
                    affinity = row[2]
                turns.append([*items, *output])
                root, current = current, response.get("previous_response_id")
        return Chain([item for turn in reversed(turns) for item in turn], root, affinity)

    def find_item(self, item_id: str, *, owner: str | None = None) -> Json | None:
        """An input or output item of a stored response by its id (for `item_reference` items), or None."""
        needle = json.dumps(item_id)
        pattern = "%" + needle.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
        with self._connect() as conn:
            # A coarse text match narrows the rows (the newest first); the exact match is made on the JSON.
            rows = conn.execute(
                "SELECT response, input_items FROM responses WHERE owner IS ? AND (response LIKE ? "
                "ESCAPE '!' OR input_items LIKE ? ESCAPE '!') ORDER BY created_at DESC LIMIT 50",
                (owner, pattern, pattern)).fetchall()
        for response, items in rows:
            for item in [*json.loads(response).get("output", []), *json.loads(items)]:
                if isinstance(item, dict) and item.get("id") == item_id and item.get("type") != "item_reference":
                    return dict(item)
        return None

    def set_state(self, key: str, value: str) -> None:
        with self._connect(write=True) as conn:
            conn.execute("INSERT INTO cli_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                         "value = excluded.value", (key, value))

    def state(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM cli_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])
