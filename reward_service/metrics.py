"""Prometheus metrics, labelled by backend. One registry per app, so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REWARD_BUCKETS = (-5, -3, -2, -1, -0.5, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "reward_requests_total", "Scoring requests by backend and outcome", ["backend", "status"], registry=r
        )
        self.items = Counter("reward_items_total", "Items scored by backend and outcome", ["backend", "status"], registry=r)
        self.latency = Histogram(
            "reward_request_seconds", "Scoring request latency", ["backend"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.rewards = Histogram(
            "reward_value", "Distribution of rewards served", ["backend"], buckets=REWARD_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "reward_batch_size", "Items per forward pass", ["backend"], buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "reward_batch_tokens", "Padded tokens per forward pass", ["backend"], buckets=TOKEN_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "reward_inference_seconds", "Forward pass time", ["backend"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "reward_queue_wait_seconds", "Time items wait before their batch runs", ["backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("reward_queue_depth", "Items waiting for a batch", ["backend"], registry=r)
        self.ready = Gauge("reward_backend_ready", "1 when the backend can score", ["backend"], registry=r)
        self.model_info = Gauge(
            "reward_model_info", "Model version served by each backend (value is always 1)", ["backend", "model"],
            registry=r,
        )

    def batch_observer(self, backend: str):
        """A callback the engine's batcher calls after each forward pass."""

        def observe(size: int, tokens: int, inference_s: float, oldest_wait_s: float) -> None:
            self.batch_size.labels(backend).observe(size)
            self.batch_tokens.labels(backend).observe(tokens)
            self.inference.labels(backend).observe(inference_s)
            self.queue_wait.labels(backend).observe(oldest_wait_s)

        return observe
