"""SIGKILL the real service while tasks are pending and ratings are coming in; restart it:
no task and no saved rating is lost, and the waiting jobs still complete and can be polled."""

import json
import signal
import threading
import time

import httpx

from bench.load import free_port
from tests.conftest import write_human_config
from tests.conftest import start_server, stop

ALICE = {"Authorization": "Bearer token-alice-0123456"}


def value_of(text: str) -> float:
    return float(1 + int(text.split()[-1]) % 5)  # the rater's rating is a function of the item


def rate_until_stopped(url, saved: list, stop_event: threading.Event):
    """Rate as fast as possible; remember each rating the service said was saved."""
    with httpx.Client(base_url=url, headers=ALICE, timeout=5) as client:
        while not stop_event.is_set():
            try:
                task = client.get("/v1/tasks/next").json()["task"]
                if task is None:
                    return
                value = value_of(task["responses"][0])
                r = client.post(f"/v1/tasks/{task['id']}/rating", json={"score": value})
                if r.status_code == 200 and r.json()["saved"]:
                    saved.append((task["responses"][0], value))
            except httpx.HTTPError:
                return  # the service was killed under us


def test_sigkill_and_restart_loses_nothing(tmp_path):
    config = write_human_config(tmp_path, {"alice": "token-alice-0123456"}, rank_groups=False)
    port = free_port()
    process, url = start_server(config, port=port)
    async_items = [{"prompt": "p", "response": f"async item {i}"} for i in range(40)]
    blocking_items = [{"prompt": "p", "response": f"blocking item {i}"} for i in range(5)]
    try:
        job = httpx.post(f"{url}/score", json={"items": async_items, "wait": False, "request_id": "async"}).json()
        blocked = {}
        waiter = threading.Thread(target=lambda: blocked.setdefault("r", _post_quietly(
            f"{url}/score", {"items": blocking_items, "request_id": "blocking", "timeout_s": 600})))
        waiter.start()
        time.sleep(0.5)
        saved: list = []
        stop_event = threading.Event()
        rater = threading.Thread(target=rate_until_stopped, args=(url, saved, stop_event))
        rater.start()
        started = time.monotonic()
        while len(saved) < 10:
            assert rater.is_alive() and time.monotonic() - started < 60, "the rater stopped before the kill"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-stream: the rater is still posting
        process.wait(10)
        rater.join(10)
        waiter.join(10)
        assert "r" in blocked and blocked["r"] is None  # the waiting request lost its connection
    finally:
        stop(process)

    process, url = start_server(config, port=port)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            stored = [line for line in client.get("/v1/human/export?format=ratings").text.splitlines() if line]
            kept = {(json.loads(line)["responses"][0], json.loads(line)["ratings"][0]["score"]) for line in stored}
            assert set(saved) <= kept, "a rating the service said was saved is gone"
            summary = client.get("/v1/human/summary").json()
            assert summary["pending"] + summary["rated_tasks"] == 45  # every task is still there, once

            # Rate the rest, then the async job completes and the blocking job answers its retry.
            rate_until_stopped(url, [], threading.Event())
            polled = client.get(f"/v1/jobs/{job['job_id']}").json()
            assert polled["status"] == "done"
            assert polled["scores"] == [value_of(i["response"]) for i in async_items]
            retry = client.post("/score", json={"items": blocking_items, "request_id": "blocking", "timeout_s": 30})
            assert retry.status_code == 200, retry.text
            assert retry.json()["scores"] == [value_of(i["response"]) for i in blocking_items]
    finally:
        stop(process)


def _post_quietly(url, body):
    try:
        return httpx.post(url, json=body, timeout=600)
    except httpx.HTTPError:
        return None
