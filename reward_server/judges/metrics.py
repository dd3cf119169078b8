"""Prometheus metrics of the judges' endpoint calls, in the server's own registry (``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from reward_server.metrics import METRICS

CALLS = Counter(
    "reward_judge_calls",
    "Calls to a judge's endpoint (one per distinct rendered prompt of a batch), by judge and outcome "
    "(ok or the error kind).",
    ["judge", "outcome"],
    registry=METRICS,
)
ERRORS = Counter(
    "reward_judge_errors",
    "Failed judge answers, by judge and kind: unreachable, timeout, http_status, bad_response, bad_answer, template.",
    ["judge", "kind"],
    registry=METRICS,
)
RETRIES = Counter(
    "reward_judge_retries",
    "Judge calls sent again (connection error, 429, 503), by judge.",
    ["judge"],
    registry=METRICS,
)
LATENCY = Histogram(
    "reward_judge_call_seconds",
    "Time of one judge call from its slot to its answer (retries included), by judge.",
    ["judge"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=METRICS,
)
TOKENS = Counter(
    "reward_judge_tokens",
    "Tokens the endpoint reported, by judge and type (prompt, completion).",
    ["judge", "type"],
    registry=METRICS,
)
IN_FLIGHT = Gauge(
    "reward_judge_calls_in_flight", "Judge calls holding a slot now, by judge.", ["judge"], registry=METRICS
)
DEDUPLICATED = Counter(
    "reward_judge_deduplicated",
    "Samples (per criterion) whose rendered prompt was already sent in the same batch, by judge.",
    ["judge"],
    registry=METRICS,
)
