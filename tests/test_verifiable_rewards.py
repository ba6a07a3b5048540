"""Verifiable rewards through the service: references in the contract, math and code verdicts,
hostile code contained while other requests are served, rule and model rewards mixed by config,
verdict metrics; the trainer side (RewardClient, TRL adapter, OpenRLHF labels) over real HTTP."""

from __future__ import annotations

import json
import threading
import time

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
    import os

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
