"""Prometheus metrics of the reward server, served over HTTP when ``metrics_port`` is set."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from reward_server.models.stats import BatcherStats

#: The server's own registry, so nothing else in the process leaks into the endpoint.
METRICS = CollectorRegistry()

REQUESTS = Counter(
    "reward_requests",
    "Calls answered, by method (gRPC method or HTTP route), status code (gRPC's name), team and transport.",
    ["method", "code", "team", "transport"],
    registry=METRICS,
)
LATENCY = Histogram(
    "reward_request_seconds",
    "Call latency on the server, by method and transport (grpc or http).",
    ["method", "transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=METRICS,
)
REWARD_SECONDS = Histogram(
    "reward_compute_seconds",
    "Time one reward took over one request's batch.",
    ["reward"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=METRICS,
)
SAMPLES = Counter("reward_samples_scored", "Samples scored, by reward.", ["reward"], registry=METRICS)
TIMEOUTS = Counter(
    "reward_sample_timeouts", "Samples cut off by their time budget, by reward.", ["reward"], registry=METRICS
)
OUTCOMES = Counter(
    "reward_sample_outcomes",
    "Samples by reward and outcome: scored, not_applicable, reward_error, time_limit, unavailable.",
    ["reward", "kind"],
    registry=METRICS,
)
IN_FLIGHT = Gauge("reward_requests_in_flight", "Score calls being processed, by team.", ["team"], registry=METRICS)


class ModelCollector:
    """Exports the batching workers' counters at scrape time, labelled by reward and ``model@device``:
    queue depth, batch sizes, tokens (``rate()`` gives tokens/s), time in the queue and in forward passes."""

    def __init__(self, stats: Callable[[], Mapping[tuple[str, str], BatcherStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        labels = ["reward", "model"]
        sizes = HistogramMetricFamily(
            "reward_model_batch_size", "Texts per batch formed by a model's batching worker.", labels=labels
        )
        queue = GaugeMetricFamily("reward_model_queue_depth", "Texts waiting for a model.", labels=labels)
        shared = CounterMetricFamily(
            "reward_model_shared_batches", "Batches holding texts of several requests.", labels=labels
        )
        tokens = CounterMetricFamily("reward_model_tokens", "Tokens run through the model (no padding).", labels=labels)
        padded = CounterMetricFamily("reward_model_padded_tokens", "Tokens run, padding included.", labels=labels)
        speed = GaugeMetricFamily(
            "reward_model_tokens_per_second", "Tokens per second of forward-pass time since start.", labels=labels
        )
        waits = HistogramMetricFamily(
            "reward_model_queue_seconds", "Time a text waited from queueing to its batch's start.", labels=labels
        )
        forward = HistogramMetricFamily(
            "reward_model_forward_seconds", "Time of one batch's forward passes in the model thread.", labels=labels
        )
        oom = CounterMetricFamily(
            "reward_model_out_of_memory", "Batches failed for device memory (RESOURCE_EXHAUSTED).", labels=labels
        )
        for key, stats in self._stats().items():
            key = list(key)
            counts = dict(stats.batch_sizes)  # a copy: the event loop thread keeps counting
            buckets = [(str(b), sum(n for size, n in counts.items() if size <= b)) for b in MODEL_BATCH_BUCKETS]
            buckets.append(("+Inf", stats.batches))
            sizes.add_metric(key, buckets, sum_value=stats.sequences)
            queue.add_metric(key, stats.queued)
            shared.add_metric(key, stats.shared_batches)
            tokens.add_metric(key, stats.tokens)
            padded.add_metric(key, stats.padded_tokens)
            speed.add_metric(key, stats.tokens_per_second)
            oom.add_metric(key, stats.out_of_memory)
            for family, histogram in ((waits, stats.queue_seconds), (forward, stats.forward_seconds)):
                bounds = [*(str(b) for b in histogram.bounds), "+Inf"]
                family.add_metric(key, list(zip(bounds, histogram.cumulative(), strict=True)), histogram.sum)
        yield from (sizes, queue, shared, tokens, padded, speed, waits, forward, oom)


MODEL_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def serve_metrics(port: int, host: str = "0.0.0.0") -> int:
    """Start the /metrics HTTP endpoint in a background thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=host, registry=METRICS)
    return server.server_address[1]
