"""`cfai batch`: submit (with --wait), list, show, cancel, download and wait, through Typer's runner and the emulator.

Batches run in the test's process with the proxy's executor (cli.batch_run); the data directory is the test's
CFAI_HOME, which the assertions read back through the stores (usage rows, batch rows).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cfai_cli.settings import load_settings
from cfai_cli.store.batches import BatchStore
from cfai_cli.store.usage import UsageLog
from tests.cli.conftest import Invoke
from tests.openai_schema import validate

CHAT = "/v1/chat/completions"


def request(custom_id: str, *, url: str = CHAT, body: dict[str, Any] | None = None) -> dict[str, Any]:
    if body is None:
        body = ({"model": "text-embedding-3-small", "input": custom_id} if url == "/v1/embeddings" else
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"say {custom_id}"}]})
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def parsed(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cfai_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cfai:") and "OFFLINE" not in line]


def batches() -> list[dict[str, Any]]:
    rows, _ = BatchStore(load_settings().database).page_all(limit=100, after=None)
    return rows


def test_submit_wait_piped_prints_every_answer_and_accounts_usage(cli: Invoke, tmp_path: Path) -> None:
    ids = [f"t-{n}" for n in range(7)]
    source = jsonl(tmp_path / "in.jsonl", [request(i) for i in ids])
    result = cli("--offline", "batch", "submit", str(source), "--wait")
    assert result.exit_code == 0, result.stderr
    lines = parsed(result.stdout)
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    for line in lines:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        validate(line["response"]["body"], "CreateChatCompletionResponse")
        assert line["custom_id"].removeprefix("t-") in json.dumps(line["response"]["body"])  # its own answer
    (row,) = batches()
    assert row["status"] == "completed" and row["completed"] == 7 and row["owner"] is None
    assert f"{row['id']}: completed, 7/7 done, 0 failed" in result.stderr  # plain progress when piped
    usage = UsageLog(load_settings().database).rows(since=0)
    assert [u.route for u in usage] == ["batch/chat/completions"] * 7  # the recorder was flushed at the end
    assert all(u.key_id is None for u in usage)


def test_submit_without_wait_prints_the_id_or_the_batch(cli: Invoke, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [request("a"), request("b")])
    plain = cli("--offline", "batch", "submit", str(source), "--metadata", "job=tickets", "--metadata", "n=2")
    assert plain.exit_code == 0, plain.stderr
    batch_id = plain.stdout.strip()
    assert batch_id.startswith("batch_") and f"cfai batch wait {batch_id}" in plain.stderr
    as_json = cli("--offline", "batch", "submit", str(source), "--json")
    batch = json.loads(as_json.stdout)
    validate(batch, "Batch")
    assert batch["status"] == "validating" and batch["endpoint"] == CHAT  # inferred from the lines' url
    shown = json.loads(cli("batch", "show", batch_id, "--json").stdout)
    assert shown["metadata"] == {"job": "tickets", "n": "2"} and shown["status"] == "validating"


def test_bad_jsonl_names_the_line_and_stores_nothing(cli: Invoke, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(request("a")) + "\n\n" + json.dumps(request("a")) + "\n", encoding="utf-8")
    result = cli("--offline", "batch", "submit", str(source), "--wait")
    assert result.exit_code == 4
    assert cfai_lines(result.stderr) == [f"cfai: {source}: line 3: 'custom_id' 'a' is used by an earlier line; "
                                         "each must be unique."]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(request("a")) + "\n{not json\n", encoding="utf-8")
    second = cli("--offline", "batch", "submit", str(broken))
    assert second.exit_code == 4 and "line 2" in cfai_lines(second.stderr)[0]
    assert batches() == [] and result.stdout == second.stdout == ""


def test_endpoint_is_inferred_or_checked(cli: Invoke, tmp_path: Path) -> None:
    mixed = jsonl(tmp_path / "mixed.jsonl", [request("a"), request("b", url="/v1/embeddings")])
    result = cli("--offline", "batch", "submit", str(mixed))
    assert result.exit_code == 2 and "use 2 urls" in result.stderr
    chat = jsonl(tmp_path / "chat.jsonl", [request("a"), request("b")])
    wrong = cli("--offline", "batch", "submit", str(chat), "--endpoint", "/v1/embeddings")
    assert wrong.exit_code == 4
    assert cfai_lines(wrong.stderr) == [f"cfai: {chat}: line 1: 'url' is {CHAT}, but --endpoint is /v1/embeddings; "
                                        "every line must use the batch's endpoint."]
    assert cli("--offline", "batch", "submit", str(chat), "--endpoint", "/v2/chat").exit_code == 2
    embed = jsonl(tmp_path / "embed.jsonl", [request("x", url="/v1/embeddings")])
    done = cli("--offline", "batch", "submit", str(embed), "--endpoint", "/v1/embeddings", "--wait", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert len(batches()) == 1


def test_wait_writes_output_and_errors_files(cli: Invoke, tmp_path: Path) -> None:
    lines = [request("good-1"), request("bad", body={"model": "gpt-4o-mini"}), request("good-2")]
    source = jsonl(tmp_path / "in.jsonl", lines)
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    result = cli("--offline", "batch", "submit", str(source), "--wait", "-o", str(out), "--errors", str(err))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # the answers went to --output
    assert sorted(line["custom_id"] for line in parsed(out.read_text())) == ["good-1", "good-2"]
    (failed,) = parsed(err.read_text())
    assert failed["custom_id"] == "bad" and failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["param"] == "messages"
    assert "2 of 3 lines succeeded, 1 failed" in result.stderr


def test_wait_resumes_a_batch_submitted_without_wait(cli: Invoke, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [request(f"r{n}") for n in range(5)])
    batch_id = cli("--offline", "batch", "submit", str(source)).stdout.strip()
    early = cli("batch", "download", batch_id)
    assert early.exit_code == 4
    assert cfai_lines(early.stderr) == [f"cfai: batch {batch_id} is validating (0 of 0 lines done): its files are "
                                        "written when it ends. Run it to the end here with "
                                        f"`cfai batch wait {batch_id}`."]
    waited = cli("--offline", "batch", "wait", batch_id)
    assert waited.exit_code == 0, waited.stderr
    assert sorted(line["custom_id"] for line in parsed(waited.stdout)) == [f"r{n}" for n in range(5)]
    saved = tmp_path / "saved.jsonl"
    download = cli("batch", "download", batch_id, "-o", str(saved))
    assert download.exit_code == 0 and download.stdout == ""
    assert saved.read_text() == waited.stdout  # the same output file, not a second run
    again = cli("--offline", "batch", "wait", batch_id, "--json")  # a final batch: nothing runs again
    assert again.exit_code == 0 and json.loads(again.stdout)["request_counts"]["completed"] == 5
    assert len(UsageLog(load_settings().database).rows(since=0)) == 5


def test_list_and_show_piped_and_json(cli: Invoke, tmp_path: Path) -> None:
    assert cli("batch", "list").stdout == ""
    source = jsonl(tmp_path / "in.jsonl", [request("a"), request("b")])
    first = cli("--offline", "batch", "submit", str(source)).stdout.strip()
    second = json.loads(cli("--offline", "batch", "submit", str(source), "--wait", "--json").stdout)["id"]
    piped = cli("batch", "list").stdout.splitlines()
    assert piped[0].split("\t") == ["id", "status", "endpoint", "ok/failed/total", "created", "key"]
    assert [row.split("\t")[:4] for row in piped[1:]] == [[second, "completed", CHAT, "2/0/2"],
                                                          [first, "validating", CHAT, "0/0/0"]]
    listed = json.loads(cli("batch", "list", "--json", "-n", "1").stdout)
    validate(listed, "ListBatchesResponse")
    assert [b["id"] for b in listed["data"]] == [second] and listed["has_more"] is True
    shown = dict(row.split("\t", 1) for row in cli("batch", "show", second).stdout.splitlines()[1:])
    assert shown["status"] == "completed" and shown["requests"] == "2 total, 2 succeeded, 0 failed"
    assert shown["output_file_id"].startswith("file-") and shown["completed_at"] != "-"
    missing = cli("batch", "show", "batch_nope")
    assert missing.exit_code == 4 and cfai_lines(missing.stderr)[0].startswith("cfai: No batch 'batch_nope'")


def test_cancel_finishes_here_and_keeps_a_final_batch(cli: Invoke, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [request("a"), request("b")])
    batch_id = cli("--offline", "batch", "submit", str(source)).stdout.strip()
    cancelled = cli("--offline", "batch", "cancel", batch_id, "--json")
    assert cancelled.exit_code == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"  # nobody held it: finished here
    assert cli("batch", "download", batch_id).stdout == ""  # nothing had run
    again = cli("--offline", "batch", "cancel", batch_id)
    assert again.exit_code == 4 and "already cancelled" in cfai_lines(again.stderr)[0]
    done = cli("--offline", "batch", "submit", str(source), "--wait", "--json")
    done_id = json.loads(done.stdout)["id"]
    refused = cli("--offline", "batch", "cancel", done_id)
    assert refused.exit_code == 4 and "already completed" in refused.stderr
    assert len(parsed(cli("batch", "download", done_id).stdout)) == 2


def test_cancel_without_credentials_leaves_it_to_the_runner(cli: Invoke, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [request("a")])
    batch_id = cli("--offline", "batch", "submit", str(source)).stdout.strip()
    result = cli("batch", "cancel", batch_id)
    assert result.exit_code == 0 and "stops it" in result.stderr
    assert batches()[0]["status"] == "cancelling"
    assert json.loads(cli("--offline", "batch", "wait", batch_id, "--json").stdout)["status"] == "cancelled"


def test_key_policy_applies_and_the_owner_is_listed(cli: Invoke, tmp_path: Path) -> None:
    cli("keygen", "--name", "ci", "--models", "text-embedding-*")
    cli("keygen", "--name", "embedder", "--scopes", "embeddings")
    source = jsonl(tmp_path / "in.jsonl", [request("a")])
    refused = cli("--offline", "batch", "submit", str(source), "--key", "embedder")
    assert refused.exit_code == 4 and "cannot batch /v1/chat/completions" in refused.stderr
    result = cli("--offline", "batch", "submit", str(source), "--key", "ci", "--wait", "--errors",
                 str(tmp_path / "err.jsonl"), "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 0, result.stderr
    (line,) = parsed((tmp_path / "err.jsonl").read_text())
    assert line["response"]["status_code"] == 403  # the key's model patterns judged the line
    (row,) = batches()
    key_id = row["owner"]
    assert key_id.startswith("key_")
    assert [u.key_id for u in UsageLog(load_settings().database).rows(since=0)] == [key_id]
    assert cli("batch", "list").stdout.splitlines()[1].split("\t")[5] == f"ci ({key_id})"
    cli("keys", "revoke", "ci")
    revoked = cli("--offline", "batch", "submit", str(source), "--key", "ci")
    assert revoked.exit_code == 4 and "revoked or expired" in revoked.stderr


def test_output_flags_need_wait_and_a_writable_path(cli: Invoke, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [request("a")])
    assert cli("--offline", "batch", "submit", str(source), "-o", str(tmp_path / "o")).exit_code == 2
    assert cli("--offline", "batch", "submit", str(source), "--wait", "-o", str(tmp_path)).exit_code == 2
    assert cli("--offline", "batch", "submit", str(source), "--metadata", "novalue").exit_code == 2
    assert batches() == []


def test_ctrl_c_stops_waiting_and_wait_resumes_without_rerunning(cli: Invoke, tmp_path: Path,
                                                                  cfai_home: Path) -> None:
    """A real SIGINT to a real `cfai batch submit --wait`: exit 130 with the resume hint, the lease released,
    finished lines kept; `cfai batch wait` then runs only the rest."""
    assert cli("config", "set", "batch_concurrency", "1").exit_code == 0
    total = 400
    source = jsonl(tmp_path / "in.jsonl", [request(f"c{n}") for n in range(total)])
    process = subprocess.Popen([sys.executable, "-m", "cfai_cli", "--offline", "batch", "submit", str(source),
                                "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    database = cfai_home / "cfai.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until some lines have finished (not all)
        time.sleep(0.05)
        try:
            with sqlite3.connect(database) as conn:
                found = conn.execute("SELECT completed FROM batches").fetchone()
        except sqlite3.OperationalError:  # the batches table is not made yet
            continue
        if found and found[0] >= 3:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    (row,) = batches()
    batch_id = row["id"]
    assert row["status"] == "in_progress" and 3 <= row["completed"] < total
    assert f"Resume with `cfai batch wait {batch_id}`" in stderr.decode().splitlines()[-1]
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT lease_owner FROM batches").fetchone() == (None,)  # released, not left to expire
        before = dict(conn.execute("SELECT custom_id, output FROM batch_lines WHERE state = 'done'").fetchall())
    resumed = cli("--offline", "batch", "wait", batch_id)
    assert resumed.exit_code == 0, resumed.stderr
    lines = parsed(resumed.stdout)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"c{n}" for n in range(total))
    kept = {line["custom_id"]: line for line in lines if line["custom_id"] in before}
    assert all(kept[cid] == json.loads(output) for cid, output in before.items())  # finished lines not re-run
