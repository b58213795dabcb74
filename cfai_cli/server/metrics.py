"""Prometheus metrics for the proxy: requests, errors, latency histograms, tokens, upstream retries.

Imports only the standard library. Counters live in this process (one set per uvicorn worker, as
Prometheus' multi-process model expects); `render()` writes the text exposition format 0.0.4.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _labels(**labels: str) -> str:
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in labels.items())
    return "{" + body + "}" if body else ""


class Metrics:
    def __init__(self, retries: Callable[[], int] = lambda: 0) -> None:
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency_buckets: defaultdict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        self.latency_count: defaultdict[str, int] = defaultdict(int)
        self.tokens: defaultdict[str, int] = defaultdict(int)
        self.in_flight = 0
        self.retries = retries

    def observe(self, *, route: str, status: int, seconds: float, error_code: str | None,
                prompt_tokens: int, completion_tokens: int) -> None:
        self.requests[(route, str(status))] += 1
        if status >= 400:
            self.errors[(route, error_code or str(status))] += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.latency_buckets[route][i] += 1
        self.latency_sum[route] += seconds
        self.latency_count[route] += 1
        self.tokens["prompt"] += prompt_tokens
        self.tokens["completion"] += completion_tokens

    def render(self) -> str:
        lines = ["# HELP cfai_requests_total Requests answered by the proxy.", "# TYPE cfai_requests_total counter"]
        lines += [f"cfai_requests_total{_labels(route=r, status=s)} {n}" for (r, s), n in sorted(self.requests.items())]
        lines += ["# HELP cfai_errors_total Requests answered with an error, by error code.",
                  "# TYPE cfai_errors_total counter"]
        lines += [f"cfai_errors_total{_labels(route=r, code=c)} {n}" for (r, c), n in sorted(self.errors.items())]
        lines += ["# HELP cfai_request_duration_seconds Time to the end of the answer (streams included).",
                  "# TYPE cfai_request_duration_seconds histogram"]
        for route in sorted(self.latency_count):
            for bound, count in zip(BUCKETS, self.latency_buckets[route], strict=True):
                lines.append(f"cfai_request_duration_seconds_bucket{_labels(route=route, le=repr(bound))} {count}")
            total = self.latency_count[route]
            lines.append(f"cfai_request_duration_seconds_bucket{_labels(route=route, le='+Inf')} {total}")
            lines.append(f"cfai_request_duration_seconds_sum{_labels(route=route)} {self.latency_sum[route]:.6f}")
            lines.append(f"cfai_request_duration_seconds_count{_labels(route=route)} {total}")
        lines += ["# HELP cfai_tokens_total Tokens reported in answers.", "# TYPE cfai_tokens_total counter"]
        lines += [f"cfai_tokens_total{_labels(type=t)} {self.tokens[t]}" for t in ("prompt", "completion")]
        lines += ["# HELP cfai_upstream_retries_total Retries of transient Workers AI failures.",
                  "# TYPE cfai_upstream_retries_total counter", f"cfai_upstream_retries_total {self.retries()}",
                  "# HELP cfai_in_flight_requests Requests being answered now.", "# TYPE cfai_in_flight_requests gauge",
                  f"cfai_in_flight_requests {self.in_flight}"]
        return "\n".join(lines) + "\n"
