"""`ppo-train`: RLHF a causal LM against reward-service, one reward call per rollout batch."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import httpx


def wait_until_ready(url: str, backend: str | None, timeout_s: float) -> dict:
    """Wait until the reward backend this run uses can score (stop at once if it failed to
    load); returns its entry of /v1/backends (name, type, model, ...)."""
    from trainer_client.client import API_KEY_ENV, auth_headers

    headers = auth_headers()
    deadline = time.time() + timeout_s
    last = "no answer"
    while time.time() < deadline:
        try:
            answer = httpx.get(f"{url.rstrip('/')}/v1/backends", timeout=2, headers=headers)
            if answer.status_code in (401, 403):
                raise SystemExit(f"ppo-train: {url} refused the API key: set {API_KEY_ENV}")
            listing = answer.json()
            name = backend or listing["default_backend"]
            info = {b["name"]: b for b in listing["backends"]}.get(name)
            if info is None:
                raise SystemExit(f"ppo-train: backend {name!r} is not configured at {url} "
                                 f"(known: {', '.join(b['name'] for b in listing['backends'])})")
            if info["ready"]:
                return info
            if info["error"]:
                raise SystemExit(f"ppo-train: backend {name!r} failed to load: {info['error']}")
            last = f"backend {name!r} still loading"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = str(exc)
        time.sleep(1)
    raise SystemExit(f"ppo-train: reward-service at {url} not ready after {timeout_s:.0f}s ({last})")


def main(argv: list[str] | None = None) -> None:
    from trainer_client.client import RewardClient
    from trainer_client.policy_models import resolve_policy
    from trainer_client.ppo import config
    from trainer_client.ppo.trainer import PPOTrainer, summarize
    from trainer_client.prompts import load_prompts

    parser = argparse.ArgumentParser(prog="ppo-train", description=__doc__)
    parser.add_argument("--config", help="YAML settings (see trainer_client/ppo/config.py); flags override it")
    parser.add_argument("--service-url")
    parser.add_argument("--backend", help="reward backend, e.g. sentiment, rm, human")
    parser.add_argument("--policy", help="smollm2-135m-instruct or an HF causal LM folder")
    parser.add_argument("--prompts", help="rotten-tomatoes or a file with one prompt per line")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--advantage", choices=["rloo", "gae"], help="rloo (group baseline, default) or gae (critic)")
    parser.add_argument("--group-size", type=int, help="samples per prompt in a step")
    parser.add_argument("--output-dir")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--wait-for-service", type=float, default=600, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = config.load(args.config, {
            "service_url": args.service_url, "backend": args.backend, "policy": args.policy, "prompts": args.prompts,
            "steps": args.steps, "batch_size": args.batch_size,
            "advantage": args.advantage, "group_size": args.group_size, "output_dir": args.output_dir, "seed": args.seed,
        })
        prompts = load_prompts(settings.prompts, settings.prompt_words, settings.seed)
    except ValueError as exc:
        raise SystemExit(f"ppo-train: {exc}") from None
    backend = wait_until_ready(settings.service_url, settings.backend, args.wait_for_service)
    if backend["type"] == "human":
        if settings.reward_timeout_s < 600:  # people need time to rate a batch
            settings = settings.model_copy(update={"reward_timeout_s": 3600})
        print(f"human rewards: rate each step's {settings.batch_size} rollouts at "
              f"{settings.service_url.rstrip('/')}/label (each step waits up to {settings.reward_timeout_s:.0f}s "
              "for its batch)", file=sys.stderr)
    policy_dir = resolve_policy(settings.policy)
    with RewardClient(settings.service_url, backend=settings.backend, timeout_s=settings.reward_timeout_s + 30,
                      on_model_change=settings.on_model_change) as client:
        trainer = PPOTrainer(settings, policy_dir, client, prompts)
        print(f"policy {policy_dir} ({trainer.trainable_parameters / 1e6:.1f}M trainable parameters), "
              f"{len(prompts)} prompts, reward from {settings.service_url} backend {settings.backend or '(default)'}",
              file=sys.stderr)
        history = trainer.train()
    summary = summarize(history)
    print(json.dumps(summary, indent=2))
    print(f"log {settings.output_dir}/log.jsonl, curve {settings.output_dir}/reward_curve.png")


if __name__ == "__main__":
    main()
