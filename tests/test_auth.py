"""API keys, admin keys and rater tokens: who may call what; keys rotate without a restart."""

import logging
import os

import pytest
import yaml
from fastapi.testclient import TestClient

from reward_service import cli
from reward_service import config as config_module
from reward_service.app import create_app

API_KEY = "api-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
ITEM = {"items": [{"prompt": "", "response": "a fine film"}]}


def make_settings(tmp_path, **auth):
    data = {"default_backend": "lexicon",
            "backends": {"lexicon": {"type": "lexicon"},
                         "human": {"type": "human", "store": f"sqlite:///{tmp_path / 'q.db'}",
                                   "raters": {"alice": "token-alice-0123456"}}},
            "auth": auth}
    return config_module.parse(yaml.safe_dump(data), "test config", environ={})


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_routes_need_the_right_key(tmp_path):
    settings = make_settings(tmp_path, api_keys=[API_KEY], admin_keys=[ADMIN_KEY])
    with TestClient(create_app(settings, load_in_background=False)) as client:
        r = client.post("/score", json=ITEM)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "unauthorized"
        assert client.post("/score", json=ITEM, headers=bearer("wrong-key-0123456789")).status_code == 401
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 200
        assert client.post("/score", json=ITEM, headers=bearer(ADMIN_KEY)).status_code == 200
        assert client.post("/get_reward", json={"query": ["x"]}).status_code == 401
        assert client.get("/v1/backends").status_code == 401
        assert client.get("/v1/jobs/whatever").status_code == 401
        assert client.get("/v1/jobs/whatever", headers=bearer(API_KEY)).status_code == 404
        # admin routes: an API key is not enough
        assert client.post("/admin/backends/lexicon/reload", headers=bearer(API_KEY)).status_code == 403
        assert client.post("/admin/backends/lexicon/reload", headers=bearer(ADMIN_KEY)).status_code == 422
        assert client.get("/v1/human/export", headers=bearer(API_KEY)).status_code == 403
        assert client.get("/v1/human/export", headers=bearer(ADMIN_KEY)).status_code == 200
        # raters use their own tokens, not API keys, and vice versa
        assert client.get("/v1/tasks/next", headers=bearer(API_KEY)).status_code == 401
        assert client.get("/v1/tasks/next", headers=bearer("token-alice-0123456")).status_code == 200
        assert client.post("/score", json=ITEM, headers=bearer("token-alice-0123456")).status_code == 401
        # open: probes, metrics (by default), the page and the schema
        for path in ("/healthz", "/readyz", "/metrics", "/label", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {"apiKey", "adminKey", "raterToken"} <= set(schemes)


def test_metrics_can_require_a_key(tmp_path):
    settings = make_settings(tmp_path, api_keys=[API_KEY], metrics_public=False)
    with TestClient(create_app(settings, load_in_background=False)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(API_KEY)).status_code == 200


def test_keys_rotate_from_the_file_without_a_restart_and_never_reach_the_logs(tmp_path, caplog):
    keys = tmp_path / "api_keys"
    keys.write_text(f"# trainer keys\n{API_KEY}\n")
    settings = make_settings(tmp_path, api_keys_file=str(keys))
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings, load_in_background=False)) as client:
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 200
        new_key = "rotated-key-0123456789abcdef"
        staged = tmp_path / "api_keys.new"
        staged.write_text(f"{API_KEY}\n{new_key}\n")  # both, while clients move over
        os.replace(staged, keys)
        assert client.post("/score", json=ITEM, headers=bearer(new_key)).status_code == 200
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 200
        staged.write_text(f"{new_key}\n")  # the old key retired
        os.replace(staged, keys)
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 401
        assert client.post("/score", json=ITEM, headers=bearer(new_key)).status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert API_KEY not in logged and new_key not in logged


def test_short_keys_and_unreadable_key_files_are_config_errors(tmp_path):
    with pytest.raises(config_module.ConfigError, match="at least 16 characters"):
        make_settings(tmp_path, api_keys=["short"])
    with pytest.raises(ValueError, match="cannot read api_keys file"):
        create_app(make_settings(tmp_path, api_keys_file=str(tmp_path / "missing")))


def test_serve_refuses_a_public_address_without_keys(tmp_path, capsys):
    config = tmp_path / "open.yaml"
    config.write_text("default_backend: lexicon\nbackends:\n  lexicon: {type: lexicon}\n")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["serve", "--config", str(config), "--host", "0.0.0.0", "--no-build"])
    assert stopped.value.code == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in capsys.readouterr().err


def test_config_show_masks_secrets(tmp_path, capsys):
    config = tmp_path / "secret.yaml"
    config.write_text(yaml.safe_dump({
        "default_backend": "human",
        "backends": {"human": {"type": "human", "store": "postgresql://reward:hunter2-secret@db/reward",
                               "raters": {"alice": "token-alice-0123456"}}},
        "auth": {"api_keys": [API_KEY], "admin_keys": [ADMIN_KEY]}}))
    cli.main(["config", "show", "--config", str(config)])
    shown = capsys.readouterr().out
    for secret in (API_KEY, ADMIN_KEY, "token-alice-0123456", "hunter2-secret"):
        assert secret not in shown
    assert "postgresql://reward:***@db/reward" in shown


def test_key_files_are_checked_and_a_removed_file_revokes_its_keys(tmp_path):
    keys = tmp_path / "api_keys"
    keys.write_text("short\n")
    with pytest.raises(ValueError, match="api_keys:1: a key must be one word of at least 16"):
        create_app(make_settings(tmp_path, api_keys_file=str(keys)))
    keys.write_bytes(b"\xef\xbb\xbf" + API_KEY.encode() + b"\r\n")  # a BOM and CRLF, as editors write them
    settings = make_settings(tmp_path, api_keys_file=str(keys))
    with TestClient(create_app(settings, load_in_background=False)) as client:
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 200
        keys.write_text("x\n")  # an invalid rewrite keeps the keys that worked
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 200
        keys.unlink()
        assert client.post("/score", json=ITEM, headers=bearer(API_KEY)).status_code == 401


def test_a_yaml_error_does_not_echo_the_config_text(tmp_path):
    with pytest.raises(config_module.ConfigError) as error:
        config_module.parse(f'auth: {{api_keys: ["{API_KEY}"\n', "secret.yaml", environ={})
    assert "line" in str(error.value) and API_KEY not in str(error.value)
