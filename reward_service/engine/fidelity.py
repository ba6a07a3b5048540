"""Is a cheaper graph (int8, fp16) faithful to fp32? Measured on fixed sample inputs.

The figures are stored in the export cache's metadata and shown in /v1/backends,
so a user can see what the speed cost in reward accuracy.
"""

from __future__ import annotations

import numpy as np

# Varied in length, tone and topic, so quantisation error shows up if it is there.
SAMPLE_TEXTS = [
    "An absolute masterpiece: moving, funny and beautifully acted.",
    "A boring, incoherent mess and a waste of two hours.",
    "It was fine. Nothing special, nothing terrible.",
    "The first half drags, but the ending makes up for almost everything.",
    "I laughed, I cried, and I will watch it again tomorrow.",
    "The dialogue is wooden and the plot holes are large enough to drive a truck through.",
    "Great performances cannot save a script this lazy.",
    "A quiet, patient film that rewards attention.",
    "What a disaster.",
    "Wonderful!",
    "The service was slow and the food was cold, but the staff apologised.",
    "Please explain how photosynthesis works in simple terms.",
    "Sure! Plants use sunlight, water and carbon dioxide to make sugar and oxygen.",
    "I don't know, maybe, it depends on what you mean by that.",
    "The quarterly report shows revenue up four percent and costs flat.",
    "Ugh, the worst customer support I have ever dealt with, never again.",
    "This product exceeded every expectation I had; highly recommended to anyone.",
    "Thanks for your help, that fixed it.",
    "The sequel is louder, longer and somehow emptier than the original.",
    "A charming little story with a big heart and a bigger soundtrack.",
    "Not bad at all, although the middle act could lose twenty minutes.",
    "The cinematography is stunning; the story, sadly, is not.",
    "He said it was good but honestly I found it tedious and predictable.",
    "A triumph of style over substance, and I enjoyed every second of it.",
]


def sample_texts(repeat_long: int = 4) -> list[str]:
    """The samples plus a few long ones, to exercise truncation-length inputs too."""
    long = [" ".join(SAMPLE_TEXTS[i : i + 6]) for i in range(0, repeat_long * 6, 6)]
    return SAMPLE_TEXTS + long


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Pearson correlation and max absolute difference over all output values."""
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        pearson = 1.0 if np.allclose(a, b) else 0.0
    else:
        pearson = float(np.corrcoef(a, b)[0, 1])
    return {
        "pearson": round(pearson, 6),
        "max_abs_diff": round(float(np.abs(a - b).max()), 6),
        "samples": int(reference.shape[0]),
    }


def batch_dependence(run, feeds: dict[str, np.ndarray]) -> float:
    """Max absolute difference between each sample's outputs scored alone and scored in one batch
    with all the others. Dynamic int8 quantises activations with one scale per tensor, so an item's
    reward moves with its batch-mates; fp32 moves only by rounding."""
    lengths = feeds["attention_mask"].sum(axis=1)
    together = run(feeds)
    alone = np.concatenate([run({name: values[i:i + 1, :length] for name, values in feeds.items()})
                            for i, length in enumerate(lengths)])
    return round(float(np.abs(together.astype(np.float64) - alone).max()), 6)
