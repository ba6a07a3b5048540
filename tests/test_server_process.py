"""The real server process, over real HTTP, switched between backends by config alone."""

import subprocess
import sys
import time

import httpx
import pytest

from bench.load import free_port
from tests.conftest import start_server, stop


@pytest.fixture
def config_file(tmp_path, tiny_model):
    def write(default_backend):
        path = tmp_path / "reward.yaml"
        path.write_text(f"""
default_backend: {default_backend}
backends:
  sentiment:
    type: sentiment
    model: {tiny_model}
    runtime: onnx
    max_length: 64
  lexicon:
    type: lexicon
""")
        return path
    return write


def test_scores_over_real_http_and_switches_backend_by_config(config_file):
    items = [{"prompt": "The film was", "response": " a joy, I loved it"},
             {"prompt": "The film was", "response": " awful and boring"}]
    process, url = start_server(config_file("sentiment"))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            body = client.post("/score", json={"items": items}).json()
            assert body["backend"] == "sentiment" and len(body["scores"]) == 2
            assert client.get("/v1/backends").json()["backends"][0]["details"]["runtime"] == "onnx"
            bad = client.post("/score", json={"items": [{"prompt": 1}]})
            assert bad.status_code == 422
            assert client.post("/score", json={"items": items}).status_code == 200
    finally:
        stop(process)

    process, url = start_server(config_file("lexicon"))  # the same request, another reward: a config edit
    try:
        body = httpx.post(f"{url}/score", json={"items": items}, timeout=30).json()
        assert body["backend"] == "lexicon"
        assert body["scores"][0] > 0.7 > 0.3 > body["scores"][1]
    finally:
        stop(process)


def test_environment_override_changes_the_default_backend(config_file):
    process, url = start_server(config_file("sentiment"), {"REWARD_SERVICE__DEFAULT_BACKEND": "lexicon"})
    try:
        body = httpx.post(f"{url}/score", json={"items": [{"prompt": "", "response": "great"}]}, timeout=30).json()
        assert body["backend"] == "lexicon"
    finally:
        stop(process)


def test_a_broken_model_path_leaves_readyz_false_with_the_reason(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(f"""
default_backend: sentiment
backends:
  sentiment: {{type: sentiment, model: {tmp_path / 'nothing-here'}}}
  lexicon: {{type: lexicon}}
""")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "reward_service", "serve", "--config", str(path),
                                "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                ready = httpx.get(f"{url}/readyz?verbose=true", timeout=1)
                if ready.json()["backends"]["sentiment"]["error"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready.status_code == 503
        assert "config.json missing" in ready.json()["backends"]["sentiment"]["error"]
        down = httpx.post(f"{url}/score", json={"items": [{"prompt": "", "response": "x"}]})
        assert down.status_code == 503 and down.json()["error"]["type"] == "backend_not_ready"
        up = httpx.post(f"{url}/score", json={"items": [{"prompt": "", "response": "x"}], "backend": "lexicon"})
        assert up.status_code == 200
    finally:
        stop(process)
