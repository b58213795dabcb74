"""server.metrics: bounded, escaped labels, and one sum over several worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cfai_cli.server.metrics import MAX_CODES, Metrics

WORKER = """
import sys
from cfai_cli.server.metrics import Metrics
metrics = Metrics(multiprocess_dir=sys.argv[1])
for _ in range(int(sys.argv[2])):
    metrics.started()
    metrics.observe(route="/v1/chat/completions", status=200, seconds=0.2, error_code=None,
                    prompt_tokens=3, completion_tokens=4)
    metrics.finished()
metrics.unauthenticated()
if sys.argv[3] == "render":
    sys.stdout.write(metrics.render().decode())
"""


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {f.name: f for f in text_string_to_metric_families(text)}[family]
    return {tuple(sorted(s.labels.items())): s.value for s in found.samples}


def test_error_codes_are_escaped_and_bounded() -> None:
    metrics = Metrics()
    hostile = 'bad"code\\with\nnewline{}'
    for i in range(MAX_CODES + 40):
        metrics.observe(route="/v1/chat/completions", status=400, seconds=0.01,
                        error_code=hostile if i == 0 else f"code-{i}", prompt_tokens=0, completion_tokens=0)
    errors = samples(metrics.render().decode(), "cfai_errors")
    codes = {dict(labels)["code"]: value for labels, value in errors.items()}
    assert codes['bad"code\\withnewline{}'] == 1  # kept (the newline stripped), escaped by the library
    assert len(codes) == MAX_CODES + 1 and codes["other"] == 40


def test_workers_are_summed(tmp_path: Path) -> None:
    """Two worker processes write their own files; a third process's /metrics shows the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(count: int, action: str) -> str:
        return subprocess.run([sys.executable, "-c", WORKER, str(tmp_path), str(count), action], env=env,
                              capture_output=True, text=True, check=True).stdout

    worker(3, "-")
    worker(5, "-")
    text = worker(0, "render")
    requests = samples(text, "cfai_requests")
    assert requests == {(("route", "/v1/chat/completions"), ("status", "200")): 8}
    assert samples(text, "cfai_unauthenticated") == {(): 3}
    assert samples(text, "cfai_tokens") == {(("type", "completion"),): 32, (("type", "prompt"),): 24}
    histogram = samples(text, "cfai_request_duration_seconds")
    assert histogram[(("le", "0.25"), ("route", "/v1/chat/completions"))] == 8
    assert samples(text, "cfai_in_flight_requests") == {(): 0}
