"""Slow: build the real builtin sentiment model on a subset and check it separates reviews.

Run with: scripts/test.sh -m slow
"""

import asyncio

import pytest

from reward_service import model_store
from reward_service.backends import Pair
from reward_service.backends.sentiment import SentimentBackend
from reward_service.config import SentimentBackendSettings

pytestmark = pytest.mark.slow

POSITIVE = ["An absolute masterpiece: moving, funny and beautifully acted.",
            "One of the best films of the year, a joy from start to finish.",
            "Brilliant, heartfelt and gorgeous to look at."]
NEGATIVE = ["A boring, incoherent mess and a waste of two hours.",
            "Terrible acting, a lazy script and no laughs at all.",
            "Dull, tedious and instantly forgettable."]


def test_builds_real_sentiment_model_on_a_subset_and_separates_clear_reviews(isolated_home):
    path = model_store.build("sentiment", force=True, limit=3000)
    card = model_store.read_card(path)
    assert card["data"]["train_examples"] == 3000
    assert card["held_out_accuracy"] > 0.65
    assert len(card["data"]["sha256"]) == 64

    async def score():
        backend = SentimentBackend("sentiment", SentimentBackendSettings(type="sentiment", model="sentiment-minilm-rt"))
        await backend.load()
        try:
            return await backend.score([Pair("", t) for t in POSITIVE + NEGATIVE])
        finally:
            await backend.close()

    scores = asyncio.run(score())
    positive, negative = scores[: len(POSITIVE)], scores[len(POSITIVE):]
    assert min(positive) > max(negative), scores
    assert sum(positive) / 3 - sum(negative) / 3 > 0.4, scores
