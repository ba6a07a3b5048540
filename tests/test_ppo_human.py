"""`ppo-train --backend human`: the PPO loop waits on each step's batch while a rater
(scripted here, on the same task API the labeling page uses) rates it over HTTP."""

import json
import threading

import httpx

from tests.conftest import POSITIVE_WORDS, make_tiny_policy, write_human_config
from tests.conftest import start_server, stop
from trainer_client import cli

RATER = {"Authorization": "Bearer token-rater-0123456"}


def judge(text: str) -> int:
    return 5 if any(word in text.split() for word in POSITIVE_WORDS) else 1


def rate_everything(url: str, stop_event: threading.Event, rated: list) -> None:
    with httpx.Client(base_url=url, headers=RATER, timeout=10) as client:
        while not stop_event.is_set():
            task = client.get("/v1/tasks/next").json()["task"]
            if task is None:
                stop_event.wait(0.05)
                continue
            if task["kind"] == "rank":
                order = sorted(range(len(task["responses"])), key=lambda i: -judge(task["responses"][i]))
                body = {"ranking": order}
            else:
                body = {"score": judge(task["responses"][0])}
            if client.post(f"/v1/tasks/{task['id']}/rating", json=body).status_code == 200:
                rated.append(task["id"])


def test_ppo_train_with_human_rewards(tmp_path, capsys):
    config = write_human_config(tmp_path, {"rater": "token-rater-0123456"}, poll_interval_s=0.05)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the movie was\nthis film is\nthe ending was\nthe music\n")
    policy = make_tiny_policy(tmp_path / "policy")
    ppo_config = tmp_path / "ppo.yaml"
    ppo_config.write_text("minibatch_size: 4\nppo_epochs: 1\ntrainable_layers: 0\nsample_every: 100\n"
                          "generation: {max_new_tokens: 4, min_new_tokens: 1}\n")
    process, url = start_server(config)
    stop_event, rated = threading.Event(), []
    rater = threading.Thread(target=rate_everything, args=(url, stop_event, rated))
    rater.start()
    try:
        cli.main(["--config", str(ppo_config), "--service-url", url, "--backend", "human", "--policy", str(policy),
                  "--prompts", str(prompts), "--steps", "2", "--batch-size", "4", "--output-dir", str(tmp_path / "run"),
                  "--wait-for-service", "30"])
    finally:
        stop_event.set()
        rater.join(10)
        stop(process)
    assert f"{url}/label" in capsys.readouterr().err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(entry["reward_model"].startswith("human@") for entry in log)
    assert all(1.0 <= entry["reward_mean"] <= 5.0 for entry in log)
    assert len(rated) >= 2  # at least one task per step, each rating saved
