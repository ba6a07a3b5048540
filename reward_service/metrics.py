"""Prometheus metrics, labelled by backend. One registry per app, so tests can build many apps."""

from __future__ import annotations

from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REWARD_BUCKETS = (-5, -3, -2, -1, -0.5, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RATING_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


REWARD_WINDOW = 1000  # rewards the recent mean/std gauges look back over, per backend


class Metrics:
    def __init__(self, backends: dict | None = None, reward_window: int = REWARD_WINDOW) -> None:
        self.registry = CollectorRegistry()
        self.recent: dict[str, deque] = {}
        self.reward_window = reward_window
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
        self.verdicts = Counter(
            "reward_verdicts_total", "Verifiable rewards by outcome (correct, wrong, no_answer, timeout, ...)",
            ["backend", "outcome"], registry=r,
        )
        self.verify_seconds = Histogram(
            "reward_verify_seconds", "Time one item's check took (math worker or code sandbox run)", ["backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tasks_pending = Gauge(
            "human_tasks_pending", "Rating tasks waiting for raters (read from the store at scrape)", ["backend"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "human_oldest_pending_seconds", "Age of the oldest task still waiting for a rating", ["backend"], registry=r
        )
        self.ratings = Counter(
            "human_ratings_total", "Ratings stored, by rater (this process)", ["backend", "rater"], registry=r
        )
        self.time_to_rate = Histogram(
            "human_time_to_rate_seconds", "From a task handed to a rater to their stored rating", ["backend"],
            buckets=RATING_BUCKETS, registry=r,
        )

        self.registry.register(_LiveCollector(self, backends or {}))

    def record_rewards(self, backend: str, scores: list[float]) -> None:
        histogram = self.rewards.labels(backend)
        for value in scores:
            histogram.observe(value)
        self.recent.setdefault(backend, deque(maxlen=self.reward_window)).extend(scores)

    def record_verdicts(self, verdicts: dict[str, list]) -> None:
        """Each verifiable-reward backend's outcomes (and check times) for one request."""
        for backend, items in verdicts.items():
            for verdict in items:
                self.verdicts.labels(backend, verdict.outcome).inc()
                if verdict.seconds is not None:
                    self.verify_seconds.labels(backend).observe(verdict.seconds)

    def rating_observer(self, backend: str):
        """A callback the human backend calls after each stored rating."""

        def observe(rater: str, seconds: float | None) -> None:
            self.ratings.labels(backend, rater).inc()
            if seconds is not None:
                self.time_to_rate.labels(backend).observe(seconds)

        return observe

    def batch_observer(self, backend: str):
        """A callback the engine's batcher calls after each forward pass."""

        def observe(size: int, tokens: int, inference_s: float, oldest_wait_s: float) -> None:
            self.batch_size.labels(backend).observe(size)
            self.batch_tokens.labels(backend).observe(tokens)
            self.inference.labels(backend).observe(inference_s)
            self.queue_wait.labels(backend).observe(oldest_wait_s)

        return observe


class _LiveCollector:
    """Values read at scrape time: the batchers' drop/reject counters and the recent reward window."""

    def __init__(self, metrics: Metrics, backends: dict):
        self.metrics = metrics
        self.backends = backends

    def describe(self):
        return []

    def collect(self):
        dropped = CounterMetricFamily(
            "reward_dropped_items", "Items dropped before inference (deadline passed or client gone)", labels=["backend"]
        )
        rejected = CounterMetricFamily(
            "reward_rejected_requests", "Requests refused with 429 because the queue was full", labels=["backend"]
        )
        for name, backend in self.backends.items():
            stats = [b.stats for b in backend.batchers()]
            dropped.add_metric([name], sum(s.dropped_items for s in stats))
            rejected.add_metric([name], sum(s.rejected_requests for s in stats))
        capacity = GaugeMetricFamily(
            "reward_queue_capacity", "Items the queue holds before answering 429", labels=["backend"]
        )
        for name, backend in self.backends.items():
            if backend.queue_capacity() is not None:
                capacity.add_metric([name], backend.queue_capacity())
        yield dropped
        yield rejected
        yield capacity
        mean = GaugeMetricFamily(
            "reward_recent_mean", f"Mean of the last {self.metrics.reward_window} rewards served", labels=["backend"]
        )
        std = GaugeMetricFamily(
            "reward_recent_std", f"Std of the last {self.metrics.reward_window} rewards served", labels=["backend"]
        )
        for name, window in list(self.metrics.recent.items()):
            if window:
                values = np.fromiter(window, dtype=float)
                mean.add_metric([name], float(values.mean()))
                std.add_metric([name], float(values.std()))
        yield mean
        yield std
