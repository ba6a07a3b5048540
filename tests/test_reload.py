"""Hot reload on a real server process: no request lost, the new version shows, a bad model changes nothing."""

import asyncio
import shutil

import httpx

from fastapi.testclient import TestClient

from reward_service import config as config_module
from reward_service import model_store
from reward_service.app import create_app
from tests.conftest import make_tiny_classifier
from tests.conftest import start_server, stop

ITEMS = [{"prompt": "Was it good?", "response": " Yes, very."}, {"prompt": "Q", "response": " meh"}]


def test_reload_under_load_loses_no_request_and_switches_version(tmp_path):
    version_a = tmp_path / "a"
    version_b = tmp_path / "b"
    make_tiny_classifier(version_a, num_labels=1, seed=0)
    make_tiny_classifier(version_b, num_labels=1, seed=1)
    served = tmp_path / "served-rm"
    shutil.copytree(version_a, served)
    old = model_store.version(served)
    config = tmp_path / "reward.yaml"
    config.write_text(f"""
default_backend: rm
backends:
  rm: {{type: learned-rm, model: {served}, runtime: onnx, precision: fp32}}
""")
    process, url = start_server(config)
    try:
        outcomes = asyncio.run(_load_with_reload(url, served, version_b))
    finally:
        stop(process)
    statuses, versions, new, reload_response, after, listed, failed_reload, after_failure = outcomes
    assert statuses and set(statuses) == {200}, set(statuses)
    assert new != old
    assert set(versions) <= {old, new} and old in versions and new in versions
    assert reload_response["previous_model"] == old and reload_response["model"] == new
    assert reload_response["runtime"] == "onnx" and reload_response["precision"] == "fp32"
    assert after == new and listed == new
    assert failed_reload.status_code == 503
    error = failed_reload.json()["error"]
    assert error["type"] == "reload_failed" and f"still serving {new}" in error["message"]
    assert after_failure == new


async def _load_with_reload(url, served, version_b):
    statuses, versions = [], []
    stop_at = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def worker():
            while not stop_at.is_set():
                response = await client.post("/score", json={"items": ITEMS})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model"])

        workers = [asyncio.ensure_future(worker()) for _ in range(8)]
        await asyncio.sleep(1.0)
        model_store.write_atomically(served, lambda staging: shutil.copytree(version_b, staging, dirs_exist_ok=True))
        new = model_store.version(served)
        reload_response = (await client.post("/admin/backends/rm/reload")).json()
        await asyncio.sleep(1.0)
        stop_at.set()
        await asyncio.gather(*workers)
        after = (await client.post("/score", json={"items": ITEMS})).json()["model"]
        listed = (await client.get("/v1/backends")).json()["backends"][0]["model"]

        (served / "config.json").write_text("{ this is not json")
        failed_reload = await client.post("/admin/backends/rm/reload")
        after_failure = (await client.post("/score", json={"items": ITEMS})).json()["model"]
        unknown = await client.post("/admin/backends/nope/reload")
        assert unknown.status_code == 404
    return statuses, versions, new, reload_response, after, listed, failed_reload, after_failure


def test_a_reload_says_what_it_served_and_what_it_cannot_do(tmp_path, tiny_model):
    """The reply names the runtime and precision (and why they differ from the config); a bad
    config file is a 422 nobody should retry; a backend added to the file needs a restart."""
    config = tmp_path / "reward.yaml"
    served = f"default_backend: rm\nbackends:\n  rm: {{type: sentiment, model: {tiny_model}, runtime: torch"
    config.write_text(served + ", precision: int8}\n")
    app = create_app(config_module.load(config), config_path=str(config), load_in_background=False)
    with TestClient(app) as client:
        reloaded = client.post("/admin/backends/rm/reload").json()
        assert reloaded["runtime"] == "torch" and reloaded["precision"] == "fp32"
        assert reloaded["notes"] == ["int8 asked for, but torch on CPU serves fp32 (int8: use runtime: onnx)"]

        config.write_text(served + ", precision: int8\n")  # the closing brace lost
        broken = client.post("/admin/backends/rm/reload")
        assert broken.status_code == 422 and "retry-after" not in broken.headers
        assert broken.json()["error"]["type"] == "invalid_config" and broken.json()["error"]["retryable"] is False

        config.write_text(served + "}\n  my-rm: {type: sentiment, model: " + str(tiny_model) + "}\n")
        added = client.post("/admin/backends/my-rm/reload")
        assert added.status_code == 409 and added.json()["error"]["type"] == "restart_needed"
        assert "restart the service to add one" in added.json()["error"]["message"]
        assert client.post("/score", json={"items": ITEMS}).status_code == 200  # still serving
