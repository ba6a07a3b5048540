"""The hard held-out reviews (tests/data/hard_reviews.jsonl) and their evaluation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from reward_service.training import data, hard_reviews
from reward_service.training.hard_reviews import HardReview


HELD_OUT_SETS = [hard_reviews.HARD_REVIEWS_PATH, hard_reviews.BLIND_REVIEWS_PATH]


@pytest.fixture(scope="module")
def reviews() -> list[HardReview]:
    return hard_reviews.load_hard_reviews()


@pytest.mark.parametrize("path", HELD_OUT_SETS, ids=lambda p: p.name)
def test_the_set_is_well_formed_and_balanced(path):
    reviews = hard_reviews.load_hard_reviews(path)
    assert len(reviews) >= 72
    assert len({" ".join(hard_reviews.words(r.text)) for r in reviews}) == len(reviews), "duplicate reviews"
    labels = Counter(r.label for r in reviews)
    assert labels[0] == labels[1], labels
    kinds = Counter(r.kind for r in reviews)
    assert set(kinds) == set(hard_reviews.KINDS), kinds
    for kind in hard_reviews.KINDS:
        assert kinds[kind] >= 10, kinds
        by_label = Counter(r.label for r in reviews if r.kind == kind)
        assert abs(by_label[0] - by_label[1]) <= 1, (kind, by_label)
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        assert type(row["label"]) is int and row["text"] == row["text"].strip()


@pytest.mark.parametrize("path", HELD_OUT_SETS, ids=lambda p: p.name)
def test_no_review_comes_from_the_training_corpus(path):
    corpus = [r.text for r in data.load_reviews()]
    assert len(corpus) > 10_000
    texts = [r.text for r in hard_reviews.load_hard_reviews(path)]
    assert not set(texts) & set(corpus)
    overlap = hard_reviews.corpus_overlap(texts, corpus)
    assert overlap["exact"] == [] and overlap["ngram"] == [], overlap


def test_the_overlap_check_finds_copies_and_shared_runs():
    corpus = ["A stunning, heartfelt film that stays with you long after the credits roll."]
    copy = "a stunning heartfelt film, that stays with you long after the credits roll!"
    shared = "Dull. But it stays with you long after the credits roll, sadly."  # 9 words in common
    found = hard_reviews.corpus_overlap([copy, shared, "A stunning film."], corpus)
    assert [t for t, _ in found["exact"]] == [copy]
    assert [t for t, _ in found["ngram"]] == [copy, shared]


def test_a_malformed_line_is_refused_naming_it(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "Fine.", "label": 1, "kind": "negation"}) + "\n"
                    + json.dumps({"text": "Fine.", "label": "yes", "kind": "negation"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: label"):
        hard_reviews.load_hard_reviews(path)
    path.write_text(json.dumps({"text": "Fine.", "label": 1, "kind": "irony"}) + "\n")
    with pytest.raises(ValueError, match="kind"):
        hard_reviews.load_hard_reviews(path)


def test_accuracy_counts_a_reward_above_one_half_as_positive():
    reviews = [HardReview("a", 1, "negation"), HardReview("b", 0, "negation"), HardReview("c", 1, "sarcasm"),
               HardReview("d", 0, "sarcasm")]
    report = hard_reviews.accuracy_report(reviews, [0.9, 0.5, 0.5, 0.2])
    assert report["accuracy"] == 0.75 and report["n"] == 4
    assert report["per_kind"] == {"negation": {"n": 2, "correct": 2, "accuracy": 1.0},
                                  "sarcasm": {"n": 2, "correct": 1, "accuracy": 0.5}}
    assert report["per_verdict"]["positive"]["accuracy"] == 0.5
    assert [r["correct"] for r in report["reviews"]] == [True, True, False, True]


def test_evaluation_of_a_tiny_model_gives_accuracy_overall_and_per_kind(tiny_model, reviews):
    report = hard_reviews.evaluate_hard_set(tiny_model, runtime="torch")
    assert report["n"] == len(reviews) and report["type"] == "sentiment"
    assert report["model_version"].startswith(tiny_model.name)
    assert report["served"]["runtime"] == "torch"
    assert set(report["per_kind"]) == set(hard_reviews.KINDS)
    for kind, summary in report["per_kind"].items():
        assert summary["n"] == sum(r.kind == kind for r in reviews)
        assert 0.0 <= summary["accuracy"] <= 1.0
    assert report["correct"] == sum(s["correct"] for s in report["per_kind"].values())
    assert all(0.0 <= r["score"] <= 1.0 for r in report["reviews"])
    assert len({r["score"] for r in report["reviews"]}) > 1  # each review scored, not one constant


def test_evaluation_of_the_lexicon(reviews):
    report = hard_reviews.evaluate_lexicon_hard_set()
    assert report["model_version"].startswith("vader@") and report["n"] == len(reviews)
    assert set(report["per_kind"]) == set(hard_reviews.KINDS)


def test_a_missing_model_is_not_built(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model"):
        hard_reviews.evaluate_hard_set(tmp_path / "nothing")


def test_the_dev_set_is_balanced_and_apart_from_the_held_out_set(reviews):
    """bench/data/hard_reviews_dev.jsonl, written without reading the held-out set, is what
    recipe changes are tried on; it shares no review and no run of 8 words with the held-out set."""
    dev = hard_reviews.load_hard_reviews(hard_reviews.DEV_REVIEWS_PATH)
    assert Counter((r.kind, r.label) for r in dev) == {(k, label): 10 for k in hard_reviews.KINDS for label in (0, 1)}
    assert hard_reviews.corpus_overlap([r.text for r in dev], [r.text for r in reviews]) == {"exact": [], "ngram": []}


def test_the_blind_set_shares_no_review_and_no_run_of_8_words_with_the_other_sets(reviews):
    blind = [r.text for r in hard_reviews.load_hard_reviews(hard_reviews.BLIND_REVIEWS_PATH)]
    dev = [r.text for r in hard_reviews.load_hard_reviews(hard_reviews.DEV_REVIEWS_PATH)]
    assert hard_reviews.corpus_overlap(blind, [r.text for r in reviews] + dev) == {"exact": [], "ngram": []}


def test_what_is_shown_of_the_blind_set_names_no_review(reviews):
    report = hard_reviews.accuracy_report(reviews[:4], [0.9, 0.1, 0.6, 0.4])
    shown = hard_reviews.blind_summary(report)
    assert "reviews" not in shown and shown["n"] == 4
    assert not any(r.text in json.dumps(shown) for r in reviews[:4])
