"""The human backend over HTTP (in process), on real SQLite and real PostgreSQL: a trainer's
/score waits while raters rate through the task API, async jobs, deadlines, fallback,
overlap, errors, export into train-rm, metrics."""

import threading
import time
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from reward_service.app import create_app
from reward_service.training.preferences import read_preferences
from tests.conftest import human_config

ALICE = {"Authorization": "Bearer token-alice-0123456"}
BOB = {"Authorization": "Bearer token-bob-0123456"}
CAROL = {"Authorization": "Bearer token-carol-0123456"}
ITEMS = [
    {"prompt": "The movie was", "response": " a delight."},
    {"prompt": "I thought the plot", "response": " dragged."},
    {"prompt": "I thought the plot", "response": " was clever."},
]


@pytest.fixture
def service(store_url):
    @contextmanager
    def start(**fields):
        app = create_app(human_config(store_url, **fields), load_in_background=False)
        with TestClient(app) as client:
            yield client

    return start


def in_background(fn, *args, **kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", fn(*args, **kwargs)))
    thread.start()
    return thread, box


def next_task(client, headers, wait_s=10.0):
    """The rater's next task, waiting for the trainer's request to create it."""
    deadline = time.monotonic() + wait_s
    while True:
        body = client.get("/v1/tasks/next", headers=headers).json()
        if body["task"] or time.monotonic() > deadline:
            return body["task"]
        time.sleep(0.05)


def test_a_waiting_score_request_gets_exactly_the_ratings_and_rankings(service):
    with service() as client:
        thread, box = in_background(client.post, "/score", json={"items": ITEMS, "request_id": "step-1",
                                                                   "timeout_s": 30})
        rate = next_task(client, ALICE)
        assert rate["kind"] == "rate" and rate["responses"] == [" a delight."]
        saved = client.post(f"/v1/tasks/{rate['id']}/rating", headers=ALICE, json={"score": 4}).json()
        assert saved["saved"] and not saved["late"]
        rank = next_task(client, ALICE)
        assert rank["kind"] == "rank" and rank["responses"] == [" dragged.", " was clever."]
        client.post(f"/v1/tasks/{rank['id']}/rating", headers=ALICE, json={"ranking": [1, 0]})
        thread.join(30)
        r = box["result"]
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scores"] == [4.0, 1.0, 5.0]  # ranked best ("clever") gets scale max, worst scale min
        assert body["sources"] == ["human"] * 3 and body["ratings"] == [1, 1, 1]
        assert body["model"].startswith("human@") and body["job_id"]
        # A retry with the same request_id gets the same job and creates no task.
        again = client.post("/score", json={"items": ITEMS, "request_id": "step-1"}).json()
        assert again["job_id"] == body["job_id"] and again["scores"] == body["scores"]
        assert client.get("/v1/human/summary").json()["pending"] == 0
        # The same request_id with other items is a conflict, not a new job.
        conflict = client.post("/score", json={"items": ITEMS[:1], "request_id": "step-1"})
        assert conflict.status_code == 409


def test_async_job_is_polled_until_rated(service):
    with service(rank_groups=False) as client:
        r = client.post("/score", json={"items": ITEMS[:2], "wait": False, "request_id": "async-1"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] == "pending" and job["scores"] == [None, None] and r.headers["location"] == job["poll"]
        again = client.post("/score", json={"items": ITEMS[:2], "wait": False, "request_id": "async-1"}).json()
        assert again["job_id"] == job["job_id"]
        for score in (2, 3):
            task = next_task(client, BOB)
            client.post(f"/v1/tasks/{task['id']}/rating", headers=BOB, json={"score": score})
            polled = client.get(job["poll"]).json()
        assert polled["status"] == "done" and polled["scores"] == [2.0, 3.0] and polled["rated"] == 2
        assert client.get("/v1/jobs/no-such-job").status_code == 404


def test_deadline_uses_the_fallback_and_marks_the_items(service):
    with service(fallback="lexicon") as client:
        thread, box = in_background(client.post, "/score", json={"items": ITEMS[:2], "timeout_s": 2})
        first = next_task(client, ALICE)
        client.post(f"/v1/tasks/{first['id']}/rating", headers=ALICE, json={"score": 5})
        second = next_task(client, ALICE)  # handed out, but not rated before the deadline
        thread.join(30)
        body = box["result"].json()
        assert body["sources"] == ["human", "fallback"] and body["scores"][0] == 5.0
        lexicon = client.post("/score", json={"items": ITEMS[1:2], "backend": "lexicon"}).json()
        assert body["scores"][1] == pytest.approx(lexicon["scores"][0])
        assert body["fallback_model"] == lexicon["model"]
        late = client.post(f"/v1/tasks/{second['id']}/rating", headers=ALICE, json={"score": 1}).json()
        assert late["saved"] and late["late"]  # kept for export, the trainer already has its reward
        assert client.get("/v1/human/summary").json()["ratings"] == 2


def test_an_unpolled_async_job_is_finished_with_the_fallback_at_its_deadline(service):
    with service(fallback="lexicon") as client:
        job = client.post("/score", json={"items": ITEMS[:2], "wait": False, "timeout_s": 0.5}).json()
        assert client.get("/v1/human/summary").json()["pending"] == 2
        deadline = time.monotonic() + 10
        # nobody polled: the sweep finished the job and took its tasks out of the queue
        while client.get("/v1/human/summary").json()["pending"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        polled = client.get(job["poll"]).json()
        assert polled["status"] == "done" and polled["sources"] == ["fallback", "fallback"]


def test_deadline_without_fallback_is_a_504_and_a_retry_resumes_waiting(service):
    with service() as client:
        r = client.post("/score", json={"items": ITEMS[:1], "request_id": "slow", "timeout_s": 0.5})
        assert r.status_code == 504 and r.json()["error"]["retryable"]
        job_id = r.json()["error"]["details"]["job_id"]
        task = next_task(client, ALICE)
        client.post(f"/v1/tasks/{task['id']}/rating", headers=ALICE, json={"score": 3})
        retry = client.post("/score", json={"items": ITEMS[:1], "request_id": "slow", "timeout_s": 5}).json()
        assert retry["job_id"] == job_id and retry["scores"] == [3.0]


def test_overlap_two_asks_two_raters_and_averages(service):
    with service(overlap=2) as client:
        thread, box = in_background(client.post, "/score", json={"items": ITEMS[:1], "timeout_s": 30})
        a = next_task(client, ALICE)
        b = next_task(client, BOB)
        assert a["id"] == b["id"]
        assert client.get("/v1/tasks/next", headers=CAROL).json()["task"] is None
        client.post(f"/v1/tasks/{a['id']}/rating", headers=ALICE, json={"score": 5})
        client.post(f"/v1/tasks/{b['id']}/rating", headers=BOB, json={"score": 2})
        thread.join(30)
        body = box["result"].json()
        assert body["scores"] == [3.5] and body["ratings"] == [2]
        agreement = client.get("/v1/human/summary").json()["agreement"]
        assert agreement["score_tasks_multiply_rated"] == 1
        ratings = [line for line in client.get("/v1/human/export?format=ratings").text.splitlines() if line]
        assert '"agreement": 0.25' in ratings[0]  # 1 - |5 - 2| / (5 - 1)


def test_rater_errors_are_clear(service):
    with service(rank_groups=True) as client:
        assert client.get("/v1/tasks/next").status_code == 401
        r = client.get("/v1/tasks/next", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        client.post("/score", json={"items": ITEMS, "wait": False})
        rate = next_task(client, ALICE)
        assert client.post(f"/v1/tasks/{rate['id']}/rating", headers=BOB, json={"score": 3}).status_code == 409
        bad = client.post(f"/v1/tasks/{rate['id']}/rating", headers=ALICE, json={"score": 3.5})
        assert bad.status_code == 422 and "one of 1, 2, 3, 4, 5" in bad.json()["error"]["message"]
        assert client.post(f"/v1/tasks/{rate['id']}/rating", headers=ALICE, json={"ranking": [0]}).status_code == 422
        assert client.post("/v1/tasks/nope/rating", headers=ALICE, json={"score": 3}).status_code == 404
        assert client.post(f"/v1/tasks/{rate['id']}/skip", headers=ALICE).json()["skipped"]
        after_skip = client.post(f"/v1/tasks/{rate['id']}/rating", headers=ALICE, json={"score": 3})
        assert after_skip.status_code == 409 and "skipped" in after_skip.json()["error"]["message"]
        rank = next_task(client, ALICE)
        wrong = client.post(f"/v1/tasks/{rank['id']}/rating", headers=ALICE, json={"ranking": [0, 0]})
        assert wrong.status_code == 422 and "exactly once" in wrong.json()["error"]["message"]
        other = client.get("/v1/tasks/next?backend=lexicon", headers=ALICE)  # not a queue alice rates in
        assert other.status_code == 404 and "use /label?backend=human" in other.json()["error"]["message"]


def test_export_feeds_train_rm_and_metrics_show_the_queue(service, tmp_path):
    with service() as client:
        items = [{"prompt": "The film", "response": r} for r in (" was great.", " was dull.", " was fine.")]
        items.append({"prompt": "Another", "response": " yes"})
        client.post("/score", json={"items": items, "wait": False})
        rank = next_task(client, ALICE)
        client.post(f"/v1/tasks/{rank['id']}/rating", headers=ALICE, json={"ranking": [0, 2, 1]})
        exported = tmp_path / "pairs.jsonl"
        exported.write_text(client.get("/v1/human/export").text)
        pairs, problems = read_preferences(exported)
        assert problems == []
        assert {(p.chosen, p.rejected) for p in pairs} == {
            (" was great.", " was fine."), (" was great.", " was dull."), (" was fine.", " was dull.")}
        ranklist = tmp_path / "ranks.jsonl"
        ranklist.write_text(client.get("/v1/human/export?format=ranklist").text)
        assert len(read_preferences(ranklist)[0]) == 3
        metrics = client.get("/metrics").text
        assert 'human_tasks_pending{backend="human"} 1.0' in metrics
        assert 'human_ratings_total{backend="human",rater="alice"} 1.0' in metrics
        assert "human_oldest_pending_seconds" in metrics and "human_time_to_rate_seconds_count" in metrics


def test_the_labeling_api_is_in_the_openapi_schema(service):
    with service() as client:
        paths = client.get("/openapi.json").json()["paths"]
        for path in ("/v1/tasks/next", "/v1/tasks/{task_id}/rating", "/v1/tasks/{task_id}/skip", "/v1/jobs/{job_id}",
                     "/v1/human/export"):
            assert path in paths
        assert "202" in paths["/score"]["post"]["responses"]
        page = client.get("/label")
        assert page.status_code == 200 and '<script src="label.js"></script>' in page.text
        assert "/v1/tasks/next" in client.get("/label.js").text


def test_train_rm_from_human_is_one_command(tmp_path, tiny_model, capsys):
    """The held-out pairs are one whole rank list (never pairs of a list trained on), and so
    few held-out pairs come with a warning; one rank list alone cannot be split."""
    from reward_service import model_store
    from reward_service.cli import main as cli
    from reward_service.human.store import NewTask, Store

    def rank(store, prompt, responses):
        store.create_job("human", None, prompt, len(responses),
                         [NewTask("rank", prompt, responses, list(range(len(responses))))], 1, None)
        task = store.claim_next("human", "alice", 60)
        store.rate(task.id, "alice", None, list(range(len(responses))))

    def train(folder):
        config = folder / "human.yaml"
        config.write_text(f"default_backend: human\nbackends:\n  human: {{type: human, store: "
                          f"'sqlite:///{folder / 'queue.sqlite3'}'}}\n")
        cli(["train-rm", "--from-human", "--config", str(config), "-o", str(folder / "my-rm"), "--base-model",
             str(tiny_model), "--max-steps", "1", "--batch-size", "4", "--max-length", "32", "--held-out", "0"])

    alone = tmp_path / "one-list"
    alone.mkdir()
    store = Store.open(f"sqlite:///{alone / 'queue.sqlite3'}")
    store.create_schema()
    rank(store, "The film", [" was a joy.", " was fine.", " was a chore.", " was dull."])
    store.close()
    with pytest.raises(SystemExit) as stopped:
        train(alone)
    assert stopped.value.code == 2 and "all 6 preference pairs share one prompt" in capsys.readouterr().err

    store = Store.open(f"sqlite:///{alone / 'queue.sqlite3'}")
    rank(store, "The plot", [" was clever.", " was thin.", " dragged."])
    store.close()
    train(alone)
    printed = capsys.readouterr()
    assert "exported 9 preference pairs from human backend 'human'" in printed.out
    assert "held-out pairwise accuracy" in printed.out and "on 3 pairs" in printed.out  # the 3-response list, whole
    assert "warning: only 3 held-out pair(s) from 1 prompt(s)" in printed.err
    card = model_store.read_card(alone / "my-rm")
    assert card["data"]["files"][0]["pairs"] == 9 and card["data"]["held_out_pairs"] == 3
    assert card["held_out_warning"].startswith("only 3 held-out pair(s)")
    assert (alone / "my-rm.human-pairs.jsonl").is_file()


def test_serve_prints_each_human_backends_own_page(tmp_path):
    import yaml

    from tests.conftest import start_server, stop

    config = tmp_path / "two.yaml"
    def human(db, rater):
        return {"type": "human", "store": f"sqlite:///{tmp_path / db}", "raters": {rater: f"{rater}-token-0123456789"}}

    config.write_text(yaml.safe_dump({"default_backend": "lexicon", "backends": {
        "lexicon": {"type": "lexicon"}, "helpful": human("a.db", "ann"), "safe": human("b.db", "sam")}}))
    process, url = start_server(config)
    stop(process)
    printed = process.stdout.read()
    for name in ("helpful", "safe"):
        assert f"human backend {name!r}: raters sign in at {url}/label?backend={name} (1 rater token(s)" in printed


def test_scale_labels_follow_the_scale():
    from reward_service.config import ConfigError, RatingScale, parse

    assert RatingScale().value_labels() == {"1": "bad", "3": "okay", "5": "great"}
    assert RatingScale(min=0, max=1, step=0.25).value_labels() == {"0": "worst", "1": "best"}
    assert RatingScale(min=0, max=1, step=0.25, labels={"0.5": "meh"}).value_labels() == {"0.5": "meh"}
    with pytest.raises(ConfigError, match="scale.labels: '3' is not a value of the scale"):
        parse("default_backend: h\nbackends:\n  h: {type: human, scale: {min: 0, max: 1, step: 0.5, labels: {'3': x}}}",
              environ={})


def test_raters_who_disagree_make_no_preference(service):

    with service(overlap=2) as client:
        client.post("/score", json={"items": ITEMS[1:], "wait": False})
        for headers, ranking in ((ALICE, [0, 1]), (BOB, [1, 0])):
            task = next_task(client, headers)
            client.post(f"/v1/tasks/{task['id']}/rating", headers=headers, json={"ranking": ranking})
        assert client.get("/v1/human/export?format=pairs").text == ""
        assert client.get("/v1/human/export?format=ranklist").text == ""  # a tie is not "first > second"
        ratings = client.get("/v1/human/export?format=ratings").text
        assert '"agreement": 0.0' in ratings and '"reward": [3.0, 3.0]' in ratings


def test_train_rm_from_an_empty_queue_says_so(tmp_path, capsys):
    from reward_service.cli import main as cli

    config = tmp_path / "human.yaml"
    config.write_text(f"default_backend: human\nbackends:\n  human: {{type: human, store: 'sqlite:///{tmp_path / 'q.db'}'}}\n")
    with pytest.raises(SystemExit) as stopped:
        cli(["train-rm", "--from-human", "--config", str(config), "-o", str(tmp_path / "rm")])
    assert stopped.value.code == 2
    assert "has no preference pairs yet: 0 rated task(s)" in capsys.readouterr().err
