"""Probes an attacker would run, kept as tests (issue 17): slow clients, keys in query strings,
guessing tokens, framing, what unauthenticated callers learn, lax types.

Most run against a real service process over loopback sockets (read deadlines and the access
log exist only there), each bounded in time and in the number of requests. Probes that fail
authentication on purpose come from their own loopback address (127.0.0.2, ...), so the
throttle they trip blocks no other probe.
"""

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from bench.load import free_port
from reward_service.app import create_app
from reward_service.config import ServerSettings
from reward_service.http_server import uvicorn_config
from tests.conftest import human_config, stop

API_KEY = "probe-api-key-0123456789"
ADMIN_KEY = "probe-admin-key-0123456789"
RATER_TOKEN = "probe-rater-token-0123456789"
DEADLINE_S = 1.0  # server.header_timeout_s and body_timeout_s of the probed service
MAX_CONNECTIONS = 24
FAILED_AUTH_LIMIT = 20
FAILED_AUTH_WINDOW_S = 2.0
# What no unauthenticated reply may carry: the model folder, the database's user, host and
# name, and the backends' names.
SECRETS = ["secret-model-folder", "secretuser", "secretdb", "127.0.0.1:1", "secret-rm-name", "secret-queue-name"]


class Service:
    def __init__(self, url: str, port: int, log_path, process):
        self.url, self.port, self.log_path, self.process = url, port, log_path, process

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        """A client whose connections come from this loopback address."""
        return httpx.Client(base_url=self.url, timeout=10, transport=httpx.HTTPTransport(local_address=address))

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`reward-service serve` at log level info, with keys, short read deadlines, a small
    connection cap, and two backends that fail to load with revealing errors: a model folder
    that does not exist, and a PostgreSQL queue nobody listens for."""
    folder = tmp_path_factory.mktemp("probes")
    config = folder / "probes.yaml"
    config.write_text(yaml.safe_dump({
        "default_backend": "lexicon",
        "server": {"header_timeout_s": DEADLINE_S, "body_timeout_s": DEADLINE_S, "max_connections": MAX_CONNECTIONS},
        "auth": {"api_keys": [API_KEY], "admin_keys": [ADMIN_KEY], "metrics_public": False,
                 "failed_auth_limit": FAILED_AUTH_LIMIT, "failed_auth_window_s": FAILED_AUTH_WINDOW_S},
        "backends": {
            "lexicon": {"type": "lexicon"},
            "secret-rm-name": {"type": "learned-rm", "model": str(folder / "secret-model-folder")},
            "secret-queue-name": {"type": "human", "store": "postgresql://secretuser@127.0.0.1:1/secretdb",
                                  "raters": {"alice": RATER_TOKEN}},
        },
    }))
    port = free_port()
    log_path = folder / "service.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_service", "serve", "--config", str(config), "--port", str(port),
             "--log-level", "info", "--no-build"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # up once both broken backends have failed to load
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                states = httpx.get(f"{url}/readyz?verbose=true", headers=_bearer(API_KEY), timeout=1).json()
                if all(state["reason"] != "loading" for state in states["backends"].values()):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield Service(url, port, log_path, process)
    finally:
        stop(process)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# -- 1. slow clients --------------------------------------------------------------------------------

def _seconds_until_closed(port: int, first: bytes, trickle: bytes | None, limit_s: float = 10.0) -> float:
    """Send `first`, then one byte of `trickle` every 0.1 s (nothing if None) until the server
    closes the connection; the seconds that took (limit_s: the probe gives up and fails)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(first)
        sock.settimeout(0.1)
        position = 0
        while time.monotonic() - started < limit_s:
            try:
                if trickle:
                    sock.sendall(trickle[position % len(trickle):][:1])
                    position += 1
                if sock.recv(65536) == b"":
                    return time.monotonic() - started
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {limit_s} s")


SLOW_CLIENTS = {
    "idle (connects, sends nothing)": (b"", None),
    "headers trickled": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"abcdefgh"),
    "body trickled": (b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n", b"[[[["),
}


def test_slow_clients_are_closed_at_the_read_deadline_while_others_are_served(service):
    closed_after: dict[str, float] = {}
    threads = [threading.Thread(target=lambda name=name, parts=parts: closed_after.__setitem__(
        name, _seconds_until_closed(service.port, *parts))) for name, parts in SLOW_CLIENTS.items()]
    for thread in threads:
        thread.start()
    statuses = []
    with service.client() as client:
        while any(thread.is_alive() for thread in threads):
            statuses.append(client.post("/score", json={"items": [{"prompt": "", "response": "a fine film"}]},
                                        headers=_bearer(API_KEY)).status_code)
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    print("\nseconds until closed:", {name: round(s, 2) for name, s in closed_after.items()},
          f"normal requests meanwhile: {len(statuses)}")
    assert set(closed_after) == set(SLOW_CLIENTS)
    for name, seconds in closed_after.items():
        assert DEADLINE_S * 0.9 <= seconds <= DEADLINE_S + 1.5, (name, seconds)
    assert statuses and set(statuses) == {200}
    assert "did not arrive within 1s" in service.log()


def test_the_connection_cap_refuses_beyond_it_and_recovers_when_idle_ones_are_closed(service):
    idle = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(MAX_CONNECTIONS + 6)]
    try:
        time.sleep(0.2)
        with service.client() as client:
            refused = client.get("/healthz")
            assert refused.status_code == 503, refused.text  # beyond max_connections
            assert refused.json()["error"]["type"] == "too_many_connections", refused.text  # the typed body
            assert refused.json()["error"]["retryable"] is True and refused.headers["Retry-After"] == "1"
            time.sleep(DEADLINE_S + 0.5)  # the idle ones reach the head deadline and are closed
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_an_oversized_request_head_gets_431(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)["error"]
    assert error["type"] == "request_head_too_large" and error["retryable"] is False
    assert "65536" in error["message"] and b"aaaa" not in body


# -- 2. keys in query strings ----------------------------------------------------------------------

def test_keys_in_query_strings_never_reach_the_access_log(service):
    secret = "query-string-key-0123456789"
    with service.client("127.0.0.4") as client:
        assert client.post(f"/score?api_key={secret}", json={"items": []}).status_code == 401
        assert client.get(f"/healthz?token={secret}&x=1").status_code == 200
    deadline = time.monotonic() + 5
    while '"GET /healthz?<redacted> HTTP/1.1" 200' not in service.log():
        assert time.monotonic() < deadline, service.log()[-2000:]
        time.sleep(0.1)
    logged = service.log()
    assert '"POST /score?<redacted> HTTP/1.1" 401' in logged
    assert secret not in logged and API_KEY not in logged and RATER_TOKEN not in logged


# -- 3. guessing keys and tokens -------------------------------------------------------------------

def test_failed_authentication_is_throttled_per_address(service):
    guesses = [("GET", "/v1/rater", "wrong-rater-token-000000"), ("POST", "/score", "wrong-api-key-00000000"),
               ("POST", "/admin/backends/lexicon/reload", "wrong-admin-key-000000")]
    with service.client("127.0.0.2") as guesser, service.client("127.0.0.3") as bystander:
        started = time.monotonic()
        for attempt in range(FAILED_AUTH_LIMIT):
            method, path, token = guesses[attempt % len(guesses)]
            assert guesser.request(method, path, headers=_bearer(token)).status_code == 401, attempt
        rate = FAILED_AUTH_LIMIT / (time.monotonic() - started)
        blocked = guesser.get("/v1/rater", headers=_bearer("wrong-rater-token-000001"))
        assert blocked.status_code == 429 and blocked.json()["error"]["type"] == "too_many_failed_auth"
        assert blocked.json()["error"]["retryable"] is True
        retry_after = int(blocked.headers["Retry-After"])
        assert 1 <= retry_after <= FAILED_AUTH_WINDOW_S
        item = {"items": [{"prompt": "", "response": "fine"}]}
        # a right key does not get through the block either (else a right guess would show) ...
        assert guesser.post("/score", json=item, headers=_bearer(API_KEY)).status_code == 429
        assert guesser.get("/v1/rater", headers=_bearer(RATER_TOKEN)).status_code == 429
        # ... but other addresses are not blocked, and the guesser is let in after the wait
        assert bystander.post("/score", json=item, headers=_bearer(API_KEY)).status_code == 200
        time.sleep(retry_after + 0.1)
        assert guesser.post("/score", json=item, headers=_bearer(API_KEY)).status_code == 200
    print(f"\n{FAILED_AUTH_LIMIT} failed attempts at {rate:.0f}/s, then 429 for {retry_after} s: "
          f"at most {FAILED_AUTH_LIMIT / FAILED_AUTH_WINDOW_S:g} guesses/s from one address")


def test_a_forwarded_address_does_not_escape_the_throttle_or_block_another(service):
    """uvicorn alone believes X-Forwarded-For from 127.0.0.1: a local guesser naming a new address
    each time would never be throttled, and one naming a victim's address would get it blocked."""
    wrong = _bearer("wrong-api-key-spoofed-00")
    item = {"items": [{"prompt": "", "response": "fine"}]}
    try:
        with service.client("127.0.0.1") as guesser:
            statuses = [guesser.post("/score", json=item, headers={**wrong, "X-Forwarded-For": f"198.51.100.{i}"})
                        .status_code for i in range(FAILED_AUTH_LIMIT + 5)]
            assert statuses[:FAILED_AUTH_LIMIT] == [401] * FAILED_AUTH_LIMIT
            assert set(statuses[FAILED_AUTH_LIMIT:]) == {429}, statuses  # counted against the peer, 127.0.0.1
            time.sleep(FAILED_AUTH_WINDOW_S + 0.1)
            for _ in range(FAILED_AUTH_LIMIT):  # now all naming one victim
                guesser.post("/score", json=item, headers={**wrong, "X-Forwarded-For": "127.0.0.11"})
        with service.client("127.0.0.11") as victim:
            assert victim.post("/score", json=item, headers=_bearer(API_KEY)).status_code == 200
    finally:
        time.sleep(FAILED_AUTH_WINDOW_S + 0.1)  # 127.0.0.1, which other probes use, is let in again


def _client_seen_through(server: ServerSettings, peer: str, forwarded: str) -> str:
    """The client address the app sees under `serve`'s uvicorn settings, for a request from
    `peer` carrying `X-Forwarded-For: forwarded`."""
    seen = {}

    async def app(scope, receive, send):
        seen["client"] = scope["client"][0]

    config = uvicorn_config(app, server, "warning")
    config.load()
    scope = {"type": "http", "client": (peer, 5000), "headers": [(b"x-forwarded-for", forwarded.encode())]}
    asyncio.run(config.loaded_app(scope, None, None))
    return seen["client"]


def test_forwarded_headers_are_believed_only_from_trusted_proxies():
    default = ServerSettings()
    assert default.trusted_proxies == []
    assert _client_seen_through(default, "127.0.0.1", "203.0.113.7") == "127.0.0.1"
    behind = ServerSettings(trusted_proxies=["10.1.0.0/16", "127.0.0.1"])
    assert _client_seen_through(behind, "10.1.2.3", "203.0.113.7") == "203.0.113.7"
    assert _client_seen_through(behind, "10.1.2.3", "203.0.113.7, 127.0.0.1") == "203.0.113.7"  # proxy chain
    assert _client_seen_through(behind, "10.2.0.1", "203.0.113.7") == "10.2.0.1"  # not a trusted proxy
    assert ServerSettings(trusted_proxies=["10.1.2.3/16"]).trusted_proxies == ["10.1.0.0/16"]
    for bad in ("*", "proxy.local", "10.0.0.0/33"):
        with pytest.raises(ValueError, match="not an IP address or network"):
            ServerSettings(trusted_proxies=[bad])


# -- 4. what an unauthenticated caller learns ------------------------------------------------------

UNAUTHENTICATED = {  # (method, path, body): the status it gets without a key or token
    ("GET", "/readyz", None): 503, ("GET", "/healthz", None): 200, ("GET", "/label", None): 200,
    ("GET", "/label.js", None): 200, ("GET", "/label.css", None): 200, ("GET", "/docs", None): 200,
    ("GET", "/openapi.json", None): 200, ("GET", "/favicon.ico", None): 204, ("GET", "/nope", None): 404,
    ("GET", "/readyz?verbose=true", None): 401, ("GET", "/metrics", None): 401, ("GET", "/v1/backends", None): 401,
    ("GET", "/v1/rater?backend=nope", None): 401, ("GET", "/v1/rater?backend=secret-queue-name", None): 401,
    ("GET", "/v1/rater?backend=" + "n" * 20_000, None): 401, ("GET", "/v1/tasks/next", None): 401,
    ("POST", "/score", '{"items": [{"prompt": "", "response": "x"}], "backend": "nope"}'): 401,
    ("POST", "/admin/backends/secret-rm-name/reload", None): 401,
}


def test_unauthenticated_replies_carry_no_paths_or_names(service):
    with service.client("127.0.0.5") as client:
        for (method, path, body), status in UNAUTHENTICATED.items():
            reply = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert reply.status_code == status, (path[:60], reply.text[:300])
            for secret in SECRETS:
                assert secret not in reply.text, (path[:60], secret, reply.text[:300])
            assert len(reply.text) < 5_000 or path in ("/label.js", "/openapi.json"), path[:60]
        assert client.get("/readyz").json() == {"ready": False, "reason": "load_failed"}


def test_details_need_a_key_and_echoed_input_is_capped(service):
    with service.client("127.0.0.6") as client:
        verbose = client.get("/readyz?verbose=true", headers=_bearer(API_KEY)).json()["backends"]
        assert "secret-model-folder" in verbose["secret-rm-name"]["error"]  # the operator's view
        assert verbose["secret-queue-name"]["reason"] == "load_failed"
        rater = client.get("/v1/rater", headers=_bearer(RATER_TOKEN))  # a rater of the unreachable queue
        assert rater.status_code == 503 and not any(secret in rater.text for secret in SECRETS[1:4])
        unknown = client.post("/score", json={"items": [{"prompt": "", "response": "x"}], "backend": "b" * 100_000},
                              headers=_bearer(API_KEY))
        assert unknown.status_code == 404 and len(unknown.json()["error"]["message"]) < 400


# -- 5. framing and the other security headers ------------------------------------------------------

def test_every_response_forbids_framing_and_inline_script(service):
    with service.client("127.0.0.7") as client:
        for path in ("/label", "/label.js", "/healthz", "/docs", "/docs/assets/swagger-ui.css", "/score", "/nope"):
            headers = client.get(path).headers
            policy = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy, path
            assert "unsafe" not in policy, path
            assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "no-referrer", path
        page = client.get("/label").text
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", page)  # nothing inline


def test_the_docs_are_served_from_the_package(service):
    with service.client("127.0.0.7") as client:
        page = client.get("/docs").text
        assert "https://" not in page and "docs/assets/swagger-ui-bundle.js" in page
        script = client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert len(script.content) > 500_000
        assert client.get("/docs/assets/../../etc/passwd").status_code == 404
        assert client.get("/docs/assets/index.html").status_code == 404  # only the files the page needs


# -- 6. strict types -------------------------------------------------------------------------------

def test_ratings_and_rankings_take_numbers_not_booleans(tmp_path):
    raters = [_bearer("token-alice-0123456"), _bearer("token-bob-0123456")]
    settings = human_config(f"sqlite:///{tmp_path / 'queue.sqlite3'}", rank_groups=True)
    with TestClient(create_app(settings, load_in_background=False)) as client:
        client.post("/score", json={"wait": False, "items": [
            {"prompt": "A", "response": " one"}, {"prompt": "B", "response": " x"}, {"prompt": "B", "response": " y"},
            {"prompt": "B", "response": " z"}]})
        tasks = {}  # kind -> (task id, the rater it was handed to)
        for rater in raters:
            task = client.get("/v1/tasks/next", headers=rater).json()["task"]
            tasks[task["kind"]] = (task["id"], rater)
        (rate, rater_of_rate), (rank, rater_of_rank) = tasks["rate"], tasks["rank"]
        for task_id, rater, body, field in ((rate, rater_of_rate, {"score": True}, "body.score"),
                                            (rate, rater_of_rate, {"score": "4"}, "body.score"),
                                            (rank, rater_of_rank, {"ranking": [False, True, 2]}, "body.ranking.0")):
            reply = client.post(f"/v1/tasks/{task_id}/rating", headers=rater, json=body)
            assert reply.status_code == 422, (body, reply.text)
            assert reply.json()["error"]["type"] == "invalid_input" and field in reply.json()["error"]["message"]
        assert client.post(f"/v1/tasks/{rate}/rating", headers=rater_of_rate, json={"score": 4}).status_code == 200
        ranked = client.post(f"/v1/tasks/{rank}/rating", headers=rater_of_rank, json={"ranking": [0, 1, 2]})
        assert ranked.status_code == 200


def test_get_reward_prompts_must_match_their_queries(tmp_path):
    settings = human_config(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
    with TestClient(create_app(settings, load_in_background=False)) as client:
        for body, named in (({"query": ["Q: a", "Q: b"], "prompts": ["Q:"]}, "`prompts` has 1 entries for 2 queries"),
                            ({"query": ["Q: a"], "prompts": ["X:"]}, "prompts[0] is not the start of query[0]")):
            reply = client.post("/get_reward?backend=lexicon", json=body)
            assert reply.status_code == 422 and named in reply.json()["error"]["message"], reply.text
