"""Slow: the main job's PPO run as scripts/run.sh starts it (ppo-train's defaults, 60 steps,
the builtin sentiment model served by a real service process), on the two seeds the README
reports. About 15 minutes a seed on 2 Xeon cores with AMX (30 on the AMD EPYC against the
previous model); builds the sentiment model first if it is missing.

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
  sentiment: {type: sentiment, model: sentiment-smollm2-rt}
"""


@pytest.mark.xfail(reason="against sentiment-smollm2-rt the defaults gained +0.281 with a final KL of 6.80 > 6 "
                          "(seed 0) and +0.224 at 5.78 (seed 1; 2026-12-02, README): the reward issue's gain and KL "
                          "do not hold together yet",
                   strict=False)
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
    assert summary["steps"] == 60 and summary["reward_model"].startswith("sentiment-smollm2-rt@")
    assert summary["kl_last"] <= 6.0, summary  # the KL budget, nats per sequence
    assert summary["repeated_bigrams_last_10"] <= 0.02, summary  # fluent: no "great great great"
    assert summary["reward_gain"] >= 0.25, summary  # the target (README: measured per seed and reward model)
