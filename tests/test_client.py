"""RewardClient against a real local HTTP server that fails on purpose."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trainer_client.client import (
    AsyncRewardClient,
    ModelChanged,
    ModelChangedWarning,
    RetryPolicy,
    RewardClient,
    RewardServiceError,
)


class FlakyServer:
    """Answers /score following a script: "drop" (close without answering), a status
    code, (429, retry_after) or 200 (scores every item: 'work' counted per request_id)."""

    def __init__(self, script, model="m@1"):
        self.script = list(script)
        self.model = model
        self.request_ids = []
        self.work = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.request_ids.append(body.get("request_id"))
                action = server.script.pop(0) if server.script else 200
                if action == "drop":
                    self.close_connection = True
                    return
                retry_after = None
                if isinstance(action, tuple):
                    action, retry_after = action
                if action != 200:
                    payload = {"error": {"type": "x", "message": f"scripted {action}", "retryable": True}}
                    self._send(action, payload, retry_after)
                    return
                server.work[body["request_id"]] = server.work.get(body["request_id"], 0) + 1
                scores = [float(len(item["response"])) for item in body["items"]]
                self._send(200, {"backend": "b", "model": server.model, "scores": scores,
                                 "request_id": body["request_id"], "elapsed_ms": 1.0})

            def _send(self, status, payload, retry_after=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if retry_after is not None:
                    self.send_header("retry-after", str(retry_after))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


FAST = RetryPolicy(max_retries=5, backoff_base_s=0.01, backoff_max_s=5)


def test_retries_drops_503_and_429_then_succeeds_without_duplicating_work():
    server = FlakyServer(["drop", 503, (429, 1), 200])
    try:
        with RewardClient(server.url, retry=FAST) as client:
            result = client.score(["p1", "p2"], ["abc", "de"])
    finally:
        server.close()
    assert result.scores == [3.0, 2.0] and result.attempts == 4
    assert len(set(server.request_ids)) == 1 and len(server.request_ids) == 4  # one id across all retries
    assert server.work == {server.request_ids[0]: 1}  # scored once
    assert result.waited_s >= 1.0  # the 429's Retry-After: 1 was honoured


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_never_retries_other_4xx(status):
    server = FlakyServer([status, 200])
    try:
        with RewardClient(server.url, retry=FAST) as client, pytest.raises(RewardServiceError) as info:
            client.score(["p"], ["r"])
    finally:
        server.close()
    assert info.value.status == status and len(server.request_ids) == 1


def test_gives_up_after_max_retries_with_a_clear_error():
    server = FlakyServer([503] * 10)
    try:
        with RewardClient(server.url, retry=RetryPolicy(max_retries=2, backoff_base_s=0.01)) as client:
            with pytest.raises(RewardServiceError, match="gave up after 3 attempts"):
                client.score(["p"], ["r"])
    finally:
        server.close()
    assert len(server.request_ids) == 3


def test_unreachable_service_is_a_connection_error_after_retries():
    with RewardClient("http://127.0.0.1:9", retry=RetryPolicy(max_retries=1, backoff_base_s=0.01)) as client:
        with pytest.raises(RewardServiceError, match="gave up after 2 attempts") as info:
            client.score(["p"], ["r"])
    assert info.value.type == "connection_error"


def test_model_version_change_warns_or_stops():
    server = FlakyServer([])
    try:
        with RewardClient(server.url, retry=FAST) as client:
            client.score(["p"], ["r"])
            server.model = "m@2"
            with pytest.warns(ModelChangedWarning, match="m@1 -> m@2"):
                client.score(["p"], ["r"])
        server.model = "m@1"
        with RewardClient(server.url, retry=FAST, on_model_change="error") as client:
            client.score(["p"], ["r"])
            server.model = "m@3"
            with pytest.raises(ModelChanged):
                client.score(["p"], ["r"])
    finally:
        server.close()


def test_async_client_retries_the_same_way():
    server = FlakyServer(["drop", 502, 200])

    async def run():
        async with AsyncRewardClient(server.url, retry=FAST) as client:
            return await client.score(["p"], ["four"])

    try:
        result = asyncio.run(run())
    finally:
        server.close()
    assert result.scores == [4.0] and result.attempts == 3 and len(set(server.request_ids)) == 1


def test_mismatched_lengths_are_refused_before_sending():
    with RewardClient("http://127.0.0.1:9") as client, pytest.raises(ValueError):
        client.score(["a", "b"], ["c"])
