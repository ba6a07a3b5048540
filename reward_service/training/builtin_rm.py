"""Build the builtin reward model `rm-minilm-rt` from the packaged Rotten Tomatoes corpus.

Preference pairs: for each movie, a fresh review (chosen) against a rotten
review (rejected) of the same movie, under a short prompt naming the movie.
Held out by movie, so no movie is seen in both training and evaluation.
"""

from __future__ import annotations

import random
from pathlib import Path

from reward_service.training import data
from reward_service.training.preferences import PreferencePair
from reward_service.training.reward_model import file_entry, train_reward_model


def movie_title(slug: str) -> str:
    return slug.replace("_", " ").strip().title()


def rotten_tomatoes_pairs(seed: int = 0) -> list[PreferencePair]:
    by_movie: dict[str, tuple[list[str], list[str]]] = {}
    for review in data.load_reviews():
        fresh, rotten = by_movie.setdefault(review.movie, ([], []))
        (fresh if review.fresh else rotten).append(review.text)
    rng = random.Random(seed)
    pairs = []
    for movie in sorted(by_movie):
        fresh, rotten = by_movie[movie]
        rng.shuffle(fresh)
        rng.shuffle(rotten)
        prompt = f"A review of the movie {movie_title(movie)}:"
        pairs.extend(PreferencePair(prompt, f, r) for f, r in zip(fresh, rotten))
    return pairs


def build_rm_model(output_dir: Path, limit: int | None = None, seed: int = 0, progress: bool = True, **options) -> dict:
    pairs = rotten_tomatoes_pairs(seed)
    if limit:
        pairs = random.Random(seed).sample(pairs, min(limit, len(pairs)))
    return train_reward_model(
        pairs,
        output_dir,
        name="rm-minilm-rt",
        data_files=[file_entry(data.rotten_tomatoes_path()) | {
            "use": "fresh (chosen) vs rotten (rejected) review of the same movie; prompt names the movie"}],
        seed=seed,
        progress=progress,
        **options,
    )
