"""After a scoring run, /metrics has every named metric, with counts that match what was done."""

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from reward_service.app import create_app
from tests.conftest import settings_for

REQUESTS = [
    [{"prompt": "", "response": "I love it"}, {"prompt": "", "response": "terrible"}],
    [{"prompt": "", "response": "fine"}],
    [{"prompt": "", "response": "wonderful film"}, {"prompt": "", "response": "boring"},
     {"prompt": "", "response": "great"}],
]


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics, name, **labels):
    return metrics.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def scored(tiny_model):
    """A live app after a known scoring run: (metrics text, scores per backend)."""
    app = create_app(settings_for(tiny_model), load_in_background=False)
    scores = {"sentiment": [], "lexicon": []}
    with TestClient(app) as client:
        for backend in scores:
            for items in REQUESTS:
                body = client.post("/score", json={"items": items, "backend": backend}).json()
                scores[backend] += body["scores"]
        assert client.post("/score", json={"items": [], "backend": "lexicon"}).status_code == 422
        assert client.post("/score", json={"items": REQUESTS[1], "backend": "x"}).status_code == 404
        text = client.get("/metrics").text
    return text, scores


def test_counts_match_the_requests_made(scored):
    text, scores = scored
    m = samples(text)
    for backend in ("sentiment", "lexicon"):
        assert value(m, "reward_requests_total", backend=backend, status="ok") == len(REQUESTS)
        assert value(m, "reward_items_total", backend=backend, status="ok") == 6
        assert value(m, "reward_request_seconds_count", backend=backend) == len(REQUESTS)
        assert value(m, "reward_backend_ready", backend=backend) == 1


def test_reward_histogram_and_drift_gauges_reflect_the_scores_returned(scored):
    text, scores = scored
    m = samples(text)
    for backend, returned in scores.items():
        assert value(m, "reward_value_count", backend=backend) == len(returned)
        assert value(m, "reward_recent_mean", backend=backend) == pytest.approx(sum(returned) / len(returned))
        below_half = sum(s <= 0.5 for s in returned)
        assert value(m, "reward_value_bucket", backend=backend, le="0.5") == below_half
        assert value(m, "reward_recent_std", backend=backend) >= 0


def test_engine_metrics_for_the_model_backend(scored):
    text, _ = scored
    m = samples(text)
    assert value(m, "reward_batch_size_sum", backend="sentiment") == 6  # every item went through a batch
    assert value(m, "reward_batch_size_count", backend="sentiment") >= 1
    assert value(m, "reward_batch_tokens_count", backend="sentiment") >= 1
    assert value(m, "reward_inference_seconds_count", backend="sentiment") >= 1
    assert value(m, "reward_queue_wait_seconds_count", backend="sentiment") >= 1
    assert value(m, "reward_queue_depth", backend="sentiment") == 0
    assert value(m, "reward_queue_capacity", backend="sentiment") == 8192
    assert value(m, "reward_dropped_items_total", backend="sentiment") == 0
    assert value(m, "reward_rejected_requests_total", backend="sentiment") == 0
    versions = [labels for (name, labels) in m if name == "reward_model_info"]
    assert any(dict(labels)["backend"] == "sentiment" and "@" in dict(labels)["model"] for labels in versions)
