"""Prometheus metrics, in a registry owned by one app (no process-global state).

Under several workers (service/workers.py) every metric also lands in the supervisor's
multiprocess folder ($PROMETHEUS_MULTIPROC_DIR, read by prometheus_client when it is imported),
and `render` reports the sum over all workers: requests, batches and queue rows of the whole
service, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MODEL_INFO_LABELS = ("sha256", "device", "image_size", "latent_dim", "step")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "vaegan_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.in_flight = Gauge(
            "vaegan_requests_in_flight",
            "Requests being handled.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.errors = Counter(
            "vaegan_request_errors_total",
            "Responses with status >= 400, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "vaegan_queue_wait_seconds",
            "Time from a request's rows entering the batch queue to their forward pass.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "vaegan_batch_size",
            "Rows per forward pass.",
            ["operation"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "vaegan_forward_seconds",
            "Forward pass time per batch.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "vaegan_queue_rows",
            "Rows waiting for a forward pass.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # A gauge of 1 with the facts as labels, as an Info metric would be exposed: Info has no
        # multiprocess mode.
        self.model_info = Gauge(
            "vaegan_model_info",
            "The served checkpoint (always 1; the labels say which).",
            MODEL_INFO_LABELS,
            registry=self.registry,
            multiprocess_mode="max",
        )

    def set_model_info(self, **facts: str) -> None:
        self.model_info.labels(**facts).set(1)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
