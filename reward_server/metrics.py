"""Prometheus metrics of the reward server, served over HTTP when ``metrics_port`` is set."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from reward_server.models.stats import BatcherStats

#: The server's own registry, so nothing else in the process leaks into the endpoint.
METRICS = CollectorRegistry()

REQUESTS = Counter(
    "reward_requests", "RPCs answered, by method, status code and team.", ["method", "code", "team"], registry=METRICS
)
LATENCY = Histogram(
    "reward_request_seconds",
    "RPC latency on the server, by method.",
    ["method"],
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
IN_FLIGHT = Gauge("reward_requests_in_flight", "Score calls being processed, by team.", ["team"], registry=METRICS)


class ModelCollector:
    """Exports the batching workers' counters (batch sizes, queue depth) at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, BatcherStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        sizes = HistogramMetricFamily(
            "reward_model_batch_size", "Texts per batch formed by a model's batching worker.", labels=["model"]
        )
        queue = GaugeMetricFamily("reward_model_queue_depth", "Texts waiting for a model.", labels=["model"])
        shared = CounterMetricFamily(
            "reward_model_shared_batches", "Batches holding texts of several requests.", labels=["model"]
        )
        for name, stats in self._stats().items():
            counts = dict(stats.batch_sizes)  # a copy: the event loop thread keeps counting
            buckets = [(str(b), sum(n for size, n in counts.items() if size <= b)) for b in MODEL_BATCH_BUCKETS]
            buckets.append(("+Inf", stats.batches))
            sizes.add_metric([name], buckets, sum_value=stats.sequences)
            queue.add_metric([name], stats.queued)
            shared.add_metric([name], stats.shared_batches)
        yield from (sizes, queue, shared)


MODEL_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def serve_metrics(port: int, host: str = "0.0.0.0") -> int:
    """Start the /metrics HTTP endpoint in a background thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=host, registry=METRICS)
    return server.server_address[1]
