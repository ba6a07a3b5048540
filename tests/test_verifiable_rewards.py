"""Verifiable rewards through the service: references in the contract, math and code verdicts,
hostile code contained while other requests are served, rule and model rewards mixed by config,
verdict metrics; the trainer side (RewardClient, TRL adapter, OpenRLHF labels) over real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from reward_service import config as config_module
from reward_service.app import create_app
from tests.conftest import start_server, stop

BACKENDS = {
    "math": {"type": "math", "timeout_s": 5},
    "code": {"type": "code", "timeout_s": 3, "max_concurrent": 4},
    "format": {"type": "format", "regex": r".*\\boxed\{.+\}.*"},
    "lexicon": {"type": "lexicon"},
    "verified": {"type": "ensemble", "return_members": True,
                 "members": [{"backend": "math", "weight": 0.9}, {"backend": "format", "weight": 0.1}]},
}
SOLUTION = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 5\n"


@pytest.fixture(scope="module")
def client():
    settings = config_module.parse(json.dumps({"default_backend": "math", "backends": BACKENDS}), "test", {})
    with TestClient(create_app(settings, load_in_background=False)) as c:
        yield c


def score(client, backend, items, **fields):
    r = client.post("/score", json={"backend": backend, "items": items, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def test_math_verdicts_are_exact_and_say_why(client):
    items = [
        {"prompt": "1/2 + 1/4?", "response": "The sum is $\\frac{3}{4}$.", "reference": "0.75"},
        {"prompt": "2+2?", "response": "\\boxed{5}", "reference": "4"},
        {"prompt": "Name a colour.", "response": "Blue, I think.", "reference": "\\{1, 2\\}"},
        {"messages": [{"role": "user", "content": "Interval?"}, {"role": "assistant", "content": "$[0, 1)$"}],
         "reference": "[0,1)"},
    ]
    got = score(client, "math", items)
    assert got["scores"] == [1.0, 0.0, 0.0, 1.0]
    assert got["verdicts"] == {"math": ["correct", "wrong", "no_answer", "correct"]}


def test_a_backend_that_needs_references_names_the_items_without_one(client):
    r = client.post("/score", json={"backend": "math", "items": [
        {"prompt": "p", "response": "4", "reference": "4"}, {"prompt": "p", "response": "4"}]})
    assert r.status_code == 422
    assert "items without one: 1" in r.json()["error"]["message"] and r.json()["error"]["details"]["items"] == [1]


def test_code_rewards_the_share_of_tests_passed(client):
    got = score(client, "code", [
        {"prompt": "add", "response": SOLUTION, "reference": TESTS},
        {"prompt": "add", "response": "I cannot write code.", "reference": TESTS},
    ])
    assert got["scores"] == [pytest.approx(2 / 3), 0.0]
    assert got["verdicts"] == {"code": ["some_failed", "no_code"]}
    assert 'reward_verify_seconds_count{backend="code"} 1.0' in client.get("/metrics").text  # the item that ran


def test_hostile_code_is_contained_while_the_service_keeps_serving(client):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # a service on loopback the code must not reach
    port = listener.getsockname()[1]
    attacks = [
        "while True:\n    pass",
        "import os\nwhile True:\n    os.fork()",
        "x = bytearray(2 * 1024**3)",
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "open('/root/owned.txt', 'w').write('x')",  # the service user's home (the tests run as root in CI)
    ]  # each followed by a correct solution: only code that got past its attack would pass the test
    hostile = [f"```python\n{attack}\ndef add(a, b):\n    return a + b\n```" for attack in attacks]
    answers = {}

    def run_hostile():
        answers["hostile"] = client.post("/score", json={"backend": "code", "items": [
            {"prompt": "p", "response": code, "reference": "assert add(1, 2) == 3"} for code in hostile]})

    worker = threading.Thread(target=run_hostile)
    worker.start()
    served_meanwhile = 0
    while worker.is_alive() and served_meanwhile < 200:
        r = client.post("/score", json={"backend": "lexicon", "items": [{"prompt": "", "response": "great"}]})
        assert r.status_code == 200
        served_meanwhile += 1
        time.sleep(0.05)
    worker.join(60)
    listener.close()
    reply = answers["hostile"].json()
    assert answers["hostile"].status_code == 200 and reply["scores"] == [0.0] * len(hostile), reply
    assert served_meanwhile >= 2

    assert not os.path.exists("/root/owned.txt")


def test_rule_and_verifier_mix_by_config_and_show_each_part(client):
    got = score(client, "verified", [
        {"prompt": "2+2?", "response": "So \\boxed{4}", "reference": "4"},
        {"prompt": "2+2?", "response": "4", "reference": "4"},
        {"prompt": "2+2?", "response": "\\boxed{5}", "reference": "4"},
    ])
    assert got["scores"] == pytest.approx([1.0, 0.9, 0.1])
    assert got["members"] == {"math": [1.0, 1.0, 0.0], "format": [1.0, 0.0, 1.0]}
    assert got["verdicts"]["math"] == ["correct", "correct", "wrong"]
    metrics = client.get("/metrics").text
    assert 'reward_verdicts_total{backend="math",outcome="correct"}' in metrics


def test_trainers_send_references_over_http(tmp_path):
    from trainer_client.client import RewardClient
    from trainer_client.trl_adapter import reward_function

    config = tmp_path / "reward.yaml"
    config.write_text(json.dumps({"default_backend": "math", "backends": {"math": BACKENDS["math"]}}))
    process, url = start_server(config)
    try:
        with RewardClient(url) as client:
            direct = client.score(["1+1?", "1+1?"], ["\\boxed{2}", "3"], references=["2", "2"])
        grpo = reward_function(url, reference_column="answer")
        from_column = grpo(prompts=[[{"role": "user", "content": "1+1?"}]] * 2,
                           completions=[[{"role": "assistant", "content": "It is $2$."}], "no idea"],
                           answer=["2", "2"])
        openrlhf = httpx.post(f"{url}/get_reward", json={"query": ["Q: 1+1? A: 2"], "prompts": ["Q: 1+1? A:"],
                                                          "labels": ["2"]}).json()
    finally:
        stop(process)
    assert direct.scores == [1.0, 0.0]
    assert from_column == [1.0, 0.0]
    assert openrlhf["rewards"] == [1.0] and openrlhf["scores"] == [1.0]


LEAK = """```python
import os, sys
def leak(path):
    data = "\\n".join(os.listdir(path)) if os.path.isdir(path) else open(path).read()
    print(data)
    print(data, file=sys.stderr)
    return data
```"""


@pytest.mark.skipif(not os.access("/var/lib", os.W_OK),
                    reason="needs a folder outside /tmp and the home (which the sandbox replaces anyway): /var/lib")
def test_the_service_hides_its_key_file_config_and_model_cache_from_scored_code(tmp_path):
    """A real service on a config with a key file, its model cache set by REWARD_SERVICE_HOME, all
    world-readable in one folder outside /tmp and the home: code sent to /score reads a public file
    beside them (the control: 1.0), and nothing of the key file, the config or the cache (0.0);
    no reply carries what the code read or printed."""
    folder = Path(tempfile.mkdtemp(dir="/var/lib", prefix="reward-hidden-test-"))
    try:
        folder.chmod(0o755)
        api_key = "hidden-api-key-" + "7" * 20
        keys, config, public = folder / "api_keys", folder / "reward.yaml", folder / "public.txt"
        cache = folder / "cache"
        (cache / "models" / "rm").mkdir(parents=True)
        (cache / "models" / "rm" / "weights.safetensors").write_text("MODEL-CACHE-SECRET")
        keys.write_text(api_key + "\n")
        public.write_text("PUBLIC-MARKER")
        config.write_text("# CONFIG-SECRET-MARKER\n" + json.dumps({
            "default_backend": "code", "auth": {"api_keys_file": str(keys)},
            "backends": {"code": {"type": "code", "timeout_s": 5, "max_concurrent": 2}}}))
        for path in (keys, config, public, cache / "models" / "rm" / "weights.safetensors"):
            path.chmod(0o644)  # only the sandbox's hiding keeps them from the code
        for path in (cache, cache / "models", cache / "models" / "rm"):
            path.chmod(0o755)
        targets = [public, keys, config, cache, cache / "models" / "rm" / "weights.safetensors"]
        process, url = start_server(config, env_extra={"REWARD_SERVICE_HOME": str(cache)})
        try:
            reply = httpx.post(f"{url}/score", headers={"Authorization": f"Bearer {api_key}"}, timeout=60, json={
                "items": [{"prompt": "p", "response": LEAK, "reference": f"assert leak({str(path)!r}) != ''"}
                          for path in targets]})
            backends = httpx.get(f"{url}/v1/backends", headers={"Authorization": f"Bearer {api_key}"}).json()
        finally:
            stop(process)
        assert reply.status_code == 200, reply.text
        assert reply.json()["scores"] == [1.0, 0.0, 0.0, 0.0, 0.0], reply.text
        assert reply.json()["verdicts"]["code"] == ["passed_all"] + ["some_failed"] * 4
        for secret in (api_key, "CONFIG-SECRET-MARKER", "MODEL-CACHE-SECRET", "weights.safetensors", "PUBLIC-MARKER"):
            assert secret not in reply.text, secret
        sandbox = next(b for b in backends["backends"] if b["name"] == "code")["details"]["sandbox"]
        assert {str(keys), str(config), str(cache)} <= set(sandbox["hidden_paths"]), sandbox["hidden_paths"]
        assert sandbox["not_isolated"] == []
    finally:
        shutil.rmtree(folder)


def test_a_full_sandbox_queue_is_a_429_over_http_and_its_depth_is_exported():
    """`code` at max_concurrent 1: with max_queued 0, of two runs sent at once one runs and the
    other is a 429 at once; with max_queued 1, of three, one runs, one waits (and shows in
    reward_queue_depth) and one is a 429."""
    backends = {"code": {"type": "code", "timeout_s": 10, "max_concurrent": 1, "max_queued": 0},
                "waits": {"type": "code", "timeout_s": 10, "max_concurrent": 1, "max_queued": 1}}
    settings = config_module.parse(json.dumps({"default_backend": "code", "backends": backends}), "test", {})
    slow = {"prompt": "p", "reference": "assert add(1, 2) == 3",
            "response": "```python\nimport time\ntime.sleep(2)\ndef add(a, b):\n    return a + b\n```"}
    with TestClient(create_app(settings, load_in_background=False)) as client:
        def send_at_once(backend, count):
            replies = {}

            def post(i):
                started = time.monotonic()
                replies[i] = client.post("/score", json={"backend": backend, "items": [slow]})
                replies[i].seconds = time.monotonic() - started

            threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
            for thread in threads:
                thread.start()
            return threads, replies

        threads, replies = send_at_once("code", 2)
        for thread in threads:
            thread.join(30)
        ran, refused = sorted(replies.values(), key=lambda reply: reply.status_code)
        assert (ran.status_code, refused.status_code) == (200, 429), (ran.text, refused.text)
        assert ran.json()["scores"] == [1.0] and refused.seconds < 1.5  # refused at once, not after a wait
        assert refused.json()["error"]["type"] == "overloaded" and refused.json()["error"]["retryable"] is True
        assert refused.headers["Retry-After"] == "1" and "max_queued=0" in refused.json()["error"]["message"]
        metrics = client.get("/metrics").text
        assert 'reward_queue_depth{backend="code"} 0.0' in metrics
        assert 'reward_queue_capacity{backend="code"} 0.0' in metrics

        threads, replies = send_at_once("waits", 3)
        deadline = time.monotonic() + 10
        while 'reward_queue_depth{backend="waits"} 1.0' not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the waiting run never showed in reward_queue_depth"
            time.sleep(0.05)
        for thread in threads:
            thread.join(30)
        assert sorted(reply.status_code for reply in replies.values()) == [200, 200, 429]
        assert 'reward_queue_depth{backend="waits"} 0.0' in client.get("/metrics").text
