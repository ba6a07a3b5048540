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


def test_every_negation_template_gets_the_label_of_what_it_says():
    """Each template filled with warm and with cold words, against labels read by hand."""
    praise_when_w_is_warm = {
        "{S} is not {w}.": 0, "{S} is never {w}.": 0, "There is nothing {w} about it.": 0,
        "{S} is anything but {w}.": 0, "{S} is far from {w}.": 0, "Nobody could call it {w}.": 0,
        "{S} is not remotely {w}.": 0, "Not for one minute is it {w}.": 0, "I would never call it {w}.": 0,
        "{S} never manages to be {w}.": 0, "{S} is hardly {w}.": 0, "{S} isn't {w} in the least.": 0,
        # {w} warm, so {c} and {c2} cold: "not dull at all; it is clever" is praise
        "{S} is not {c} at all; it is {w}.": 1, "Far from {c}, it is {w} from start to finish.": 1,
        "Not {c}, not {c2}, just {w}.": 1, "You won't find it {c} for a second.": 1,
    }
    assert [t for t, _ in augmentation.NEGATIONS] == list(praise_when_w_is_warm)
    rng = random.Random(0)
    for template, warm_label in augmentation.NEGATIONS:
        for warm in (True, False):
            text, label = augmentation.negation(template, warm_label, warm, rng)
            expected = praise_when_w_is_warm[template] if warm else 1 - praise_when_w_is_warm[template]
            assert label == expected, (template, text)
            words = set(text.rstrip(".").replace(",", " ").replace(";", " ").split())
            if "{w}" in template:
                assert words & set(augmentation.WARM if warm else augmentation.COLD), text
            if "{c}" in template:
                assert words & set(augmentation.COLD if warm else augmentation.WARM), text


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
