"""Slow: the main job's PPO run as scripts/run.sh starts it (ppo-train's defaults, 60 steps,
the builtin sentiment model served by a real service process), on the two seeds the README
reports. About 30 minutes a seed on 2 cores; builds the sentiment model first if it is missing.

Run with: scripts/test.sh -m slow -k main_job
"""

import json

import pytest

from reward_service import model_store
from tests.conftest import start_server, stop
from trainer_client import cli

pytestmark = pytest.mark.slow

SENTIMENT_ONLY = """default_backend: sentiment
backends:
  sentiment: {type: sentiment, model: sentiment-minilm-rt}
"""


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.timeout(3 * 3600)  # a 60-step run: ~30 min alone on 2 cores, more on a shared machine
def test_main_job_learns_positive_reviews_within_the_kl_budget(tmp_path, seed):
    model_store.build("sentiment")  # the cached one when it is there (serve would build it past the wait)
    config = tmp_path / "reward.yaml"
    config.write_text(SENTIMENT_ONLY)
    process, url = start_server(config)
    try:
        cli.main(["--service-url", url, "--backend", "sentiment", "--seed", str(seed),
                  "--output-dir", str(tmp_path / "run"), "--wait-for-service", "600"])
    finally:
        stop(process)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    print(json.dumps(summary))
    assert summary["steps"] == 60 and summary["reward_model"].startswith("sentiment-minilm-rt@")
    assert summary["kl_last"] <= 6.0, summary  # the KL budget, nats per sequence
    assert summary["repeated_bigrams_last_10"] <= 0.02, summary  # fluent: no "great great great"
    assert summary["reward_gain"] >= 0.25, summary  # the target; measured +0.261 and +0.299 (README)
