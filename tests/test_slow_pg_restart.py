"""A real PostgreSQL restart (pg_ctlcluster) under the human queue while a rater saves
ratings the way the page does (retrying until saved): every rating arrives, exactly once,
and the job completes with the exact values. Slow and it restarts the local server, so it
runs with `-m slow` only, and only where pg_ctlcluster can restart it."""

import os
import shutil
import subprocess
import threading
import time

import httpx
import psycopg
import pytest

from tests.conftest import PG_URL, _postgres_schema_url
from tests.conftest import start_server, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("pg_ctlcluster") or os.geteuid() != 0, reason="needs root and pg_ctlcluster"),
]
ALICE = {"Authorization": "Bearer token-alice-0123456"}


def test_postgresql_restart_loses_no_rating(tmp_path):
    schema = f"hq_restart_{os.getpid()}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    config = tmp_path / "pg.yaml"
    config.write_text(f"""
default_backend: human
backends:
  human:
    type: human
    store: "{_postgres_schema_url(schema)}"
    raters: {{alice: token-alice-0123456}}
    rank_groups: false
    poll_interval_s: 0.1
""")
    process, url = start_server(config)
    try:
        items = [{"prompt": "p", "response": f"item {i}"} for i in range(200)]
        job = httpx.post(f"{url}/score", json={"items": items, "wait": False}).json()
        saved = []  # (task id, when the service said saved)
        give_up = time.monotonic() + 300

        def rater():
            with httpx.Client(base_url=url, headers=ALICE, timeout=60) as client:
                while time.monotonic() < give_up:
                    try:
                        task = client.get("/v1/tasks/next").json()["task"]
                    except (httpx.HTTPError, ValueError, KeyError):
                        time.sleep(0.2)
                        continue
                    if task is None:
                        return
                    value = 1 + int(task["responses"][0].split()[-1]) % 5
                    while time.monotonic() < give_up:  # like the page: retry until the service says saved
                        try:
                            if client.post(f"/v1/tasks/{task['id']}/rating", json={"score": value}).status_code == 200:
                                saved.append((task["id"], time.monotonic()))
                                break
                        except httpx.HTTPError:
                            pass
                        time.sleep(0.2)
                    time.sleep(0.05)  # a brisk rater: the 200 ratings take over 10 s, across the restart

        thread = threading.Thread(target=rater, daemon=True)
        thread.start()
        while len(saved) < 50:
            assert thread.is_alive() and time.monotonic() < give_up
            time.sleep(0.05)
        version, cluster = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                          check=True).stdout.split()[:2]
        subprocess.run(["pg_ctlcluster", version, cluster, "restart"], check=True, timeout=120)
        restarted_at = time.monotonic()
        thread.join(300)
        assert not thread.is_alive()
        assert sum(when > restarted_at for _, when in saved) >= 50  # ratings really went on after the restart
        polled = httpx.get(f"{url}{job['poll']}").json()
        assert polled["status"] == "done"
        assert polled["scores"] == [float(1 + i % 5) for i in range(200)]
        assert len({task for task, _ in saved}) == len(saved) == 200
    finally:
        stop(process)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            count = admin.execute(f"SELECT count(*) FROM {schema}.hq_ratings").fetchone()[0]
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    assert count == 200
