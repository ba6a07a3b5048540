"""The composed training examples of the builtin sentiment model (training/augmentation.py)."""

import random
from collections import Counter

from reward_service.training import augmentation, data, hard_reviews
from reward_service.training.data import Review

WARM_REVIEWS = [Review(f"A warm delight number {i}.", "m", True) for i in range(20)]
COLD_REVIEWS = [Review(f"A cold bore number {i}.", "m", False) for i in range(20)]


def test_each_structure_gives_the_label_its_verdict_implies():
    examples = augmentation.composed_examples(WARM_REVIEWS + COLD_REVIEWS, 600, random.Random(0))
    structures = Counter(s for *_, s in examples)
    assert set(structures) == {"contrast", "concession", "agreement", "frame", "negation"}
    for text, label, structure in examples:
        lowered = text.lower()
        if structure == "contrast":  # the verdict comes after the turn
            last = lowered.rsplit("number", 2)[-2]
            assert ("delight" in last) == bool(label), text
        elif structure == "agreement":
            assert ("delight" in lowered) == bool(label) and ("bore" in lowered) != bool(label), text
        elif structure == "frame":
            assert ("delight" in lowered) == bool(label), text
        elif structure == "concession":  # "Although A, B": B; "B, even if A": B
            verdict = lowered.rsplit(", ", 1)[1] if text.startswith(augmentation.CONCESSIONS_BEFORE) \
                else lowered.split(", ", 1)[0]
            assert ("delight" in verdict) == bool(label), text
    # a long review or one with its own turn ("but") is never a clause: it would blur the label
    assert augmentation._clause("Good, but far too long.") is None
    assert augmentation._clause(" ".join(["word"] * 30)) is None
    assert augmentation._clause("A fine film. A great one.") is None
    assert augmentation._clause("A fine film.") == "A fine film"


def test_negation_templates_flip_the_label_of_the_word():
    rng = random.Random(3)
    examples = [e for e in augmentation.composed_examples(WARM_REVIEWS + COLD_REVIEWS, 400, rng) if e[2] == "negation"]
    by_text = {text: label for text, label, _ in examples}
    assert {label for label in by_text.values()} == {0, 1}
    for text, label in by_text.items():
        if text.startswith(("There is nothing ", "Nobody could call it ")):
            word = text.rstrip(".").split()[-1 if text.startswith("Nobody") else 3]
            assert label == int(word in augmentation.COLD), text


def test_built_from_the_training_reviews_and_sharing_no_run_of_eight_words_with_the_hard_set():
    train, test = data.split_reviews(data.load_reviews(), 0.1)
    examples = augmentation.composed_examples(train, 4000, random.Random(0))
    held_out = {r.text.rstrip(" .!?") for r in test}
    clauses = {c for r in train if (c := augmentation._clause(r.text))}
    assert len(clauses) > 3000
    for text, _, structure in examples[:500]:
        if structure in ("contrast", "agreement", "frame"):
            assert not any(h and h in text for h in held_out if len(h) > 40), text
    hard = [r.text for r in hard_reviews.load_hard_reviews()]
    overlap = hard_reviews.corpus_overlap(hard, [text for text, _, _ in examples])
    assert overlap == {"exact": [], "ngram": []}


def test_the_written_training_reviews_share_no_text_with_the_hard_set_or_the_held_out_reviews():
    written = data.load_written_reviews()
    assert len(written) >= 150 and {w.label for w in written} == {0, 1}
    assert abs(sum(w.label for w in written) / len(written) - 0.5) < 0.05
    hard = [r.text for r in hard_reviews.load_hard_reviews()]
    texts = [w.text for w in written]
    assert hard_reviews.corpus_overlap(texts, hard, n=5) == {"exact": [], "ngram": []}
    _, held_out = data.split_reviews(data.load_reviews(), 0.1)
    assert hard_reviews.corpus_overlap(texts, [r.text for r in held_out]) == {"exact": [], "ngram": []}
