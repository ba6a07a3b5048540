"""Faults: a backend that raises or hangs answers 503/504 with a retry hint while the others
keep serving; the human queue survives its PostgreSQL connections being cut."""

import asyncio
import time

import psycopg
import pytest
from fastapi.testclient import TestClient

from reward_service.app import create_app
from reward_service.backends.base import Backend
from reward_service.backends.lexicon import LexiconBackend
from reward_service.config import LexiconBackendSettings
from tests.conftest import PG_URL, human_config, settings_for

ITEM = {"prompt": "", "response": "a fine film"}


class Raising(Backend):
    type = "sentiment"
    model_version = "raising@0"

    async def load(self):
        self.ready = True

    async def score(self, items, deadline=None, options=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class Hanging(Raising):
    model_version = "hanging@0"

    async def score(self, items, deadline=None, options=None):
        await asyncio.sleep(3600)


@pytest.mark.parametrize("broken, status, code", [(Raising, 503, "backend_failed"), (Hanging, 504, "deadline_exceeded")])
def test_a_broken_backend_gets_a_retry_hint_and_the_others_keep_serving(tiny_model, broken, status, code):
    backends = {"sentiment": broken("sentiment"), "lexicon": LexiconBackend("lexicon", LexiconBackendSettings(type="lexicon"))}
    app = create_app(settings_for(tiny_model), backends=backends, load_in_background=False)
    with TestClient(app) as client:
        for _ in range(3):
            r = client.post("/score", json={"items": [ITEM], "backend": "sentiment", "timeout_s": 0.3})
            assert r.status_code == status and r.json()["error"]["type"] == code
            assert r.json()["error"]["retryable"] and int(r.headers["retry-after"]) >= 1
            ok = client.post("/score", json={"items": [ITEM], "backend": "lexicon"})
            assert ok.status_code == 200
        assert client.get("/readyz").status_code == 200  # loaded, just failing: probes stay green


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_the_human_queue_reconnects_after_postgresql_drops_its_connections(store_url):
    alice = {"Authorization": "Bearer token-alice-0123456"}
    app = create_app(human_config(store_url, rank_groups=False), load_in_background=False)
    with TestClient(app) as client:
        items = [{"prompt": "p", "response": f"item {i}"} for i in range(4)]
        job = client.post("/score", json={"items": items, "wait": False}).json()
        rated = []

        def rate_one():
            task = client.get("/v1/tasks/next", headers=alice).json()["task"]
            r = client.post(f"/v1/tasks/{task['id']}/rating", headers=alice, json={"score": 1 + len(rated)})
            assert r.status_code == 200 and r.json()["saved"]
            rated.append(task["responses"][0])

        rate_one()
        rate_one()
        with psycopg.connect(PG_URL, autocommit=True) as admin:  # what a server restart does to clients
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()[0]
        assert killed >= 1
        attempts = 0
        while len(rated) < 4:  # at most a retryable 503 while the pool replaces its connections
            attempts += 1
            try:
                rate_one()
            except (AssertionError, TypeError):
                assert attempts < 10
                time.sleep(0.2)
        polled = client.get(job["poll"]).json()
        assert polled["status"] == "done" and polled["scores"] == [1.0, 2.0, 3.0, 4.0]
        assert client.get("/v1/human/summary").json()["ratings"] == 4


def test_a_pickled_model_is_refused_and_readyz_says_why(tmp_path, tiny_model):
    """Weights load as safetensors only: a pytorch_model.bin (pickle) folder never loads."""
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    assert (pickled / "pytorch_model.bin").exists() and not (pickled / "model.safetensors").exists()
    with TestClient(create_app(settings_for(pickled, runtime="torch"), load_in_background=False)) as client:
        ready = client.get("/readyz?verbose=true")
        assert ready.status_code == 503
        assert "safetensors" in ready.json()["backends"]["sentiment"]["error"]
        assert client.post("/score", json={"items": [ITEM], "backend": "lexicon"}).status_code == 200


def test_a_human_queue_whose_database_comes_up_late_turns_ready_by_itself(tiny_model):
    """A service started before its PostgreSQL: /readyz says why, then turns ready on its own."""
    import uuid

    database = f"hq_late_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    url = PG_URL.rsplit("/", 1)[0] + f"/{database}"
    try:
        with TestClient(create_app(human_config(url), load_in_background=False)) as client:
            ready = client.get("/readyz?verbose=true")
            assert ready.status_code == 503 and database in ready.json()["backends"]["human"]["error"]
            assert client.post("/score", json={"items": [ITEM], "backend": "lexicon"}).status_code == 200
            admin.execute(f"CREATE DATABASE {database}")
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz?verbose=true").json()
                time.sleep(0.2)
            job = client.post("/score", json={"items": [ITEM], "backend": "human", "wait": False})
            assert job.status_code == 202
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()
