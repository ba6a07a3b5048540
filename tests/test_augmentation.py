"""The composed training examples of the builtin sentiment model (training/augmentation.py)."""

import random
import re
from collections import Counter

from reward_service.training import augmentation, data, hard_reviews
from reward_service.training.data import Review

WARM_REVIEWS = [Review(f"A warm delight number {i}.", "m", True) for i in range(20)]
COLD_REVIEWS = [Review(f"A cold bore number {i}.", "m", False) for i in range(20)]


def _as_pattern(template: str) -> re.Pattern:
    """A bank's phrase as a pattern for the start of a text, any {slot} matching any words."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile(r".+?".join(re.escape(p) for p in parts), re.I)


def test_each_structure_gives_the_label_its_verdict_implies():
    examples = augmentation.composed_examples(WARM_REVIEWS + COLD_REVIEWS, 600, random.Random(0), extended=True)
    structures = Counter(s for *_, s in examples)
    assert set(structures) == {"contrast", "concession", "agreement", "frame", "negation", "sarcasm", "understatement",
                               "weighed", "opening"}
    filled = {label: [_as_pattern(t) for t in bank] for label, bank in (
        (0, augmentation.IRONIC_CHEER + augmentation.RECOMMENDS + augmentation.FAINT_PRAISE),
        (1, augmentation.MOCK_COMPLAINTS + augmentation.RESTRAINED_PRAISE))}
    for text, label, structure in examples:
        lowered = text.lower()
        if structure == "contrast":  # the verdict comes after the turn
            last = lowered.rsplit("number", 2)[-2]
            assert ("delight" in last) == bool(label), text
        elif structure == "agreement":
            assert ("a warm delight number" in lowered) == bool(label), text
            assert ("a cold bore number" in lowered) != bool(label), text
        elif structure == "frame":
            assert ("delight" in lowered) == bool(label), text
        elif structure == "concession":  # "Although A, B": B; "B, even if A": B
            verdict = lowered.rsplit(", ", 1)[1] if text.startswith(augmentation.CONCESSIONS_BEFORE) \
                else lowered.split(", ", 1)[0]
            assert ("delight" in verdict) == bool(label), text
        elif structure in ("sarcasm", "understatement"):  # opens with a phrase of its label's bank only
            assert any(p.match(text) for p in filled[label]) and not any(p.match(text) for p in filled[1 - label]), text
        elif structure == "weighed":  # the closing verdict decides, whatever the praise and faults before it
            assert text.endswith(augmentation.VERDICTS[label]) and not text.endswith(augmentation.VERDICTS[1 - label])
        elif structure == "opening":  # a first impression of the other verdict, then a review of the label's
            impression = lowered.split(" number")[0]
            assert any(w in impression for w in (augmentation.COLD if label else augmentation.WARM)), text
            assert ("a warm delight number" in lowered) == bool(label), text
            assert ("a cold bore number" in lowered) != bool(label), text
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
        "There isn't a {w} {n} anywhere in it.": 0, "Not a single {n} is {w}.": 0, "Not once does it feel {w}.": 0,
        "I can't think of one {w} {n} in the whole thing.": 0, "Nothing about it is {w}.": 0,
        "No one could accuse it of being {w}.": 0, "It never once feels {w}.": 0,
        "You won't find a more {w} {genre} this year.": 1, "Never {c}, always {w}.": 1,
        "Not one {n} in it is {c}.": 1,
    }
    templates = augmentation.NEGATIONS + augmentation.MORE_NEGATIONS
    assert [t for t, _ in templates] == list(praise_when_w_is_warm)
    rng = random.Random(0)
    for template, warm_label in templates:
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
    extended = augmentation.composed_examples(train, 4000, random.Random(0), extended=True)
    held_out = {r.text.rstrip(" .!?") for r in test}
    clauses = {c for r in train if (c := augmentation._clause(r.text))}
    assert len(clauses) > 3000
    for text, _, structure in examples[:500]:
        if structure in ("contrast", "agreement", "frame"):
            assert not any(h and h in text for h in held_out if len(h) > 40), text
    hard = [r.text for path in (hard_reviews.HARD_REVIEWS_PATH, hard_reviews.BLIND_REVIEWS_PATH)
            for r in hard_reviews.load_hard_reviews(path)]
    overlap = hard_reviews.corpus_overlap(hard, [text for text, _, _ in examples + extended])
    assert overlap == {"exact": [], "ngram": []}


def test_the_shipped_recipe_uses_the_classic_structures_only():
    """`extended` is opt-in: without it no sarcasm, understatement, weighed or opening example,
    and no template of MORE_NEGATIONS, so the shipped model's training data stays as it was."""
    examples = augmentation.composed_examples(WARM_REVIEWS + COLD_REVIEWS, 600, random.Random(0))
    assert {s for *_, s in examples} == {"contrast", "concession", "agreement", "frame", "negation"}
    more = [_as_pattern(t) for t, _ in augmentation.MORE_NEGATIONS]
    assert not any(p.fullmatch(text) for text, _, s in examples if s == "negation" for p in more)
