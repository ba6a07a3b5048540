"""Prompts for RLHF runs: by default the opening words of packaged Rotten Tomatoes reviews."""

from __future__ import annotations

import random
from pathlib import Path


def rotten_tomatoes_prompts(words: int = 4, seed: int = 0) -> list[str]:
    from reward_service.training.data import load_reviews

    prompts = sorted({" ".join(r.text.split()[:words]) for r in load_reviews() if len(r.text.split()) > words})
    random.Random(seed).shuffle(prompts)
    return prompts


def load_prompts(source: str, words: int = 4, seed: int = 0) -> list[str]:
    if source == "rotten-tomatoes":
        return rotten_tomatoes_prompts(words, seed)
    lines = [line.rstrip("\n") for line in Path(source).read_text().splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"ppo-train: no prompts in {source}")
    return lines
