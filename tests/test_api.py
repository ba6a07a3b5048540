"""The HTTP contract, in process, on a tiny random model and VADER."""

import json

import pytest
from fastapi.testclient import TestClient

from reward_service.app import create_app
from tests.conftest import settings_for

ITEM = {"prompt": "The movie was", "response": " wonderful."}


@pytest.fixture(scope="module")
def client(tiny_model):
    app = create_app(settings_for(tiny_model, runtime="torch", max_body_bytes=4096, max_items_per_request=50),
                     load_in_background=False)
    with TestClient(app) as c:
        yield c


def test_score_returns_one_score_per_item_with_the_model_version(client):
    items = [ITEM, {"prompt": "I", "response": " hated every minute"}, {"prompt": "", "response": "ok"}]
    r = client.post("/score", json={"items": items, "request_id": "run1-step1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "sentiment"
    assert body["model"].startswith("tiny-sentiment") and "@" in body["model"]
    assert len(body["scores"]) == 3 and all(0.0 <= s <= 1.0 for s in body["scores"])
    assert body["request_id"] == "run1-step1"
    assert body["elapsed_ms"] >= 0


def test_scores_keep_item_order(client):
    texts = ["great fun", "a dull mess", "great fun"]
    one_by_one = [client.post("/score", json={"items": [{"prompt": "", "response": t}]}).json()["scores"][0] for t in texts]
    together = client.post("/score", json={"items": [{"prompt": "", "response": t} for t in texts]}).json()["scores"]
    assert together == pytest.approx(one_by_one, abs=1e-5)
    assert together[0] == pytest.approx(together[2], abs=1e-6)


def test_a_request_can_name_another_backend(client):
    r = client.post("/score", json={"items": [{"prompt": "", "response": "I love this wonderful film"},
                                              {"prompt": "", "response": "terrible, awful, boring"}],
                                    "backend": "lexicon"})
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "lexicon" and body["model"].startswith("vader@")
    assert body["scores"][0] > 0.8 and body["scores"][1] < 0.2


def test_repeated_request_id_returns_the_first_answer(client):
    payload = {"items": [ITEM], "request_id": "retry-me"}
    first = client.post("/score", json=payload).json()
    scored_before = _reward_count(client, "sentiment")
    second = client.post("/score", json=payload).json()
    assert second["scores"] == first["scores"] and second["model"] == first["model"]
    assert _reward_count(client, "sentiment") == scored_before  # not scored a second time
    conflict = client.post("/score", json={"items": [ITEM, ITEM], "request_id": "retry-me"})
    assert conflict.status_code == 409 and conflict.json()["error"]["type"] == "request_id_conflict"


def _reward_count(client, backend):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'reward_value_count{{backend="{backend}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    "payload, where",
    [
        ({"items": []}, "items"),
        ({"items": [{"prompt": "x"}]}, "items.0: Value error, `response` is missing"),
        ({"items": [{"response": "y", "messages": [{"role": "assistant", "content": "y"}]}]}, "not both"),
        ({"items": [{"messages": [{"role": "user", "content": "hi"}]}]}, "last message must be the assistant"),
        ({"items": [{"messages": [{"role": "robot", "content": "hi"}]}]}, "items.0.messages.0.role"),
        ({"items": [{"prompt": "x", "response": 3}]}, "items.0.response"),
        ({"items": [{"prompt": None, "response": "y"}]}, "items.0: Value error, `prompt` is missing"),
        ({"items": [{"prompt": 3, "response": "y"}]}, "items.0.prompt"),
        ({"items": "not a list"}, "items"),
        ({"items": [ITEM], "timeout_s": -1}, "timeout_s"),
        ({"items": [ITEM], "surprise": True}, "surprise"),
        ({}, "items"),
    ],
)
def test_bad_input_is_a_typed_422(client, payload, where):
    r = client.post("/score", json=payload)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["type"] == "invalid_input" and error["retryable"] is False
    assert where in error["message"]


def test_malformed_json_is_422(client):
    r = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_input"


def test_unknown_backend_is_404_listing_known_ones(client):
    r = client.post("/score", json={"items": [ITEM], "backend": "gpt-judge"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "unknown_backend"
    assert error["details"]["known_backends"] == ["lexicon", "sentiment"]
    assert "lexicon" in error["message"] and "sentiment" in error["message"]


def test_oversized_body_is_413(client):
    big = {"items": [{"prompt": "", "response": "x" * 5000}]}
    r = client.post("/score", json=big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"
    chunked = client.post("/score", content=iter([json.dumps(big).encode()]),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413


def test_an_overlong_item_is_422_or_truncated_by_config(tiny_model):
    app = create_app(settings_for(tiny_model, max_chars_per_item=100), load_in_background=False)
    items = [{"prompt": "", "response": "fine"}, {"prompt": "p" * 60, "response": "great " * 10}]
    with TestClient(app) as c:
        r = c.post("/score", json={"items": items, "backend": "lexicon"})
        assert r.status_code == 422 and "item 1 has 120 characters" in r.json()["error"]["message"]
        assert r.json()["error"]["details"]["items"] == [1]
    app = create_app(settings_for(tiny_model, max_chars_per_item=100, long_items="truncate"), load_in_background=False)
    with TestClient(app) as c:
        r = c.post("/score", json={"items": items, "backend": "lexicon"})
        assert r.status_code == 200 and r.json()["truncated"] == [False, True]
        cut = c.post("/score", json={"items": [{"prompt": "p" * 50, "response": ("great " * 10)[-50:]}],
                                     "backend": "lexicon"}).json()
        assert r.json()["scores"][1] == cut["scores"][0]  # scored as the last 100 characters: the start is cut
        assert c.post("/score", json={"items": items[:1], "backend": "lexicon"}).json()["truncated"] is None


def test_concurrent_requests_over_the_limit_get_429(tiny_model):
    import asyncio

    import httpx

    app = create_app(settings_for(tiny_model, max_concurrent_requests=2), load_in_background=False)
    scorer = app.state.scorer
    release = asyncio.Event()
    lexicon = app.state.registry.backends["lexicon"]
    original = lexicon.score

    async def slow(items, deadline=None, options=None):
        await release.wait()
        return await original(items, deadline)

    lexicon.score = slow

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {"items": [{"prompt": "", "response": "ok"}], "backend": "lexicon"}
            held = [asyncio.ensure_future(c.post("/score", json=body)) for _ in range(2)]
            for _ in range(500):
                if scorer.in_flight == 2:
                    break
                await asyncio.sleep(0.01)
            refused = await c.post("/score", json=body)
            release.set()
            return refused, [await h for h in held]

    refused, held = asyncio.run(run())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert [h.status_code for h in held] == [200, 200]
    assert scorer.in_flight == 0  # every path gives its slot back


def test_too_many_items_is_413(client):
    r = client.post("/score", json={"items": [{"prompt": "", "response": "a"}] * 51})
    assert r.status_code == 413 and "limit is 50" in r.json()["error"]["message"]


def test_service_keeps_serving_after_bad_input(client):
    assert client.post("/score", json={"items": []}).status_code == 422
    bad = client.post("/score", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_input"
    assert client.post("/score", json={"items": [ITEM]}).status_code == 200


def test_openrlhf_get_reward(client):
    r = client.post("/get_reward", json={"query": ["The movie was wonderful.", "The movie was bad."]})
    assert r.status_code == 200
    assert len(r.json()["rewards"]) == 2
    r = client.post("/get_reward?backend=lexicon", json={"query": ["I love it"], "prompts": ["I"]})
    assert r.json()["backend"] == "lexicon"
    assert client.post("/get_reward", json={"query": []}).status_code == 422


def test_backends_health_ready_docs(client):
    listed = client.get("/v1/backends").json()
    assert listed["default_backend"] == "sentiment"
    by_name = {b["name"]: b for b in listed["backends"]}
    assert by_name["sentiment"]["ready"] and by_name["sentiment"]["type"] == "sentiment"
    assert by_name["sentiment"]["details"]["runtime"] == "torch"
    assert by_name["lexicon"]["model"].startswith("vader@")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/score" in client.get("/openapi.json").json()["paths"]


def test_metrics_count_requests_and_rewards(client):
    before = _reward_count(client, "lexicon")
    client.post("/score", json={"items": [ITEM, ITEM], "backend": "lexicon"})
    text = client.get("/metrics").text
    assert 'reward_requests_total{backend="lexicon",status="ok"}' in text
    assert _reward_count(client, "lexicon") == before + 2
    assert 'reward_model_info{backend="sentiment"' in text


def test_hostile_text_is_refused_at_the_boundary(client):
    surrogate = client.post("/score", content=b'{"items": [{"prompt": "", "response": "\\ud800"}]}',
                            headers={"content-type": "application/json"})
    assert surrogate.status_code == 422 and "Unicode" in surrogate.json()["error"]["message"]
    not_utf8 = client.post("/score", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert not_utf8.status_code == 422 and not_utf8.json()["error"]["type"] == "invalid_input"


def test_get_reward_splits_queries_by_their_prompts(client):
    split = client.post("/get_reward", json={"query": ["Q: hi A: great"], "prompts": ["Q: hi"]}).json()
    whole = client.post("/get_reward", json={"query": ["Q: hi A: great"]}).json()
    direct = client.post("/score", json={"items": [{"prompt": "Q: hi", "response": " A: great"}]}).json()
    assert split["rewards"] == pytest.approx(direct["scores"])
    assert len(whole["rewards"]) == 1
