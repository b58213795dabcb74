"""The response store: save/get/delete, conversation chains, the CLI's last id, and private file modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cfai_cli.store.responses import ResponseStore


def item(text: str, role: str = "user") -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{text}", "role": role, "content": [{"type": "input_text", "text": text}]}


def response(rid: str, previous: str | None, answer: str, status: str = "completed") -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": 1, "status": status, "previous_response_id": previous,
            "output": [item(answer, "assistant")]}


def test_save_get_delete(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "data" / "cfai.db")
    store.save(response("resp_1", None, "a1"), [item("q1")])
    assert store.get("resp_1") == (response("resp_1", None, "a1"), [item("q1")])
    assert store.delete("resp_1") is True and store.delete("resp_1") is False
    assert store.get("resp_1") is None and store.conversation("resp_1") is None
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "cfai.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700


def test_conversation_walks_the_chain(database: Path | str) -> None:
    store = ResponseStore(database)
    store.save(response("resp_1", None, "a1"), [item("q1")])
    store.save(response("resp_2", "resp_1", "partial", status="failed"), [item("q2")])
    store.save(response("resp_3", "resp_2", "a3"), [item("q3")])
    texts = [i["content"][0]["text"] for i in store.conversation("resp_3") or []]
    # The failed turn's question stays; its partial answer does not.
    assert texts == ["q1", "a1", "q2", "q3", "a3"]
    store.delete("resp_1")
    assert [i["content"][0]["text"] for i in store.conversation("resp_3") or []] == ["q2", "q3", "a3"]


def test_cli_state(database: Path | str) -> None:
    store = ResponseStore(database)
    assert store.state("last_response_id") is None
    store.set_state("last_response_id", "resp_1")
    store.set_state("last_response_id", "resp_2")
    assert ResponseStore(database).state("last_response_id") == "resp_2"


def test_responses_stored_before_owners_existed_stay_readable(tmp_path: Path) -> None:
    import sqlite3

    from cfai_cli.store.responses import ResponseStore

    path = tmp_path / "cfai.db"
    with sqlite3.connect(path) as conn:  # the table as the first release made it
        conn.execute("CREATE TABLE responses (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, "
                     "previous_response_id TEXT, input_items TEXT NOT NULL, response TEXT NOT NULL)")
        conn.execute("INSERT INTO responses VALUES ('resp_old', 1, NULL, '[]', '{\"id\": \"resp_old\"}')")
    store = ResponseStore(path)
    assert store.get("resp_old") == ({"id": "resp_old"}, [])
    assert store.get("resp_old", owner="key_x") is None


def test_items_are_found_by_id_for_their_owner_only(database: Path | str) -> None:
    store = ResponseStore(database)
    store.save({"id": "resp_1", "created_at": 1, "output": [{"id": "msg_a%b_c", "type": "message"}]},
               [{"id": "in_1", "type": "message"}], owner="key_x")
    store.save({"id": "resp_2", "created_at": 2, "output": [{"id": "msg_aXbYc", "type": "message"}]}, [])
    assert store.find_item("msg_a%b_c", owner="key_x") == {"id": "msg_a%b_c", "type": "message"}
    assert store.find_item("in_1", owner="key_x") == {"id": "in_1", "type": "message"}
    assert store.find_item("msg_a%b_c") is None  # another owner's (NULL: the CLI's) item is not found
    assert store.find_item("msg_aXbYc") == {"id": "msg_aXbYc", "type": "message"}
