"""`lexicon`: VADER's rule-based sentiment, mapped from -1..1 to 0..1. No model, no set-up."""

from __future__ import annotations

import asyncio

from reward_service.backends.base import DEFAULT_OPTIONS, Backend
from reward_service.config import LexiconBackendSettings
from reward_service.items import Item, ScoreOptions, Scored


class LexiconBackend(Backend):
    type = "lexicon"

    def __init__(self, name: str, settings: LexiconBackendSettings):
        super().__init__(name, settings)
        self._analyzer = None
        self._version = "vader"

    @property
    def model_version(self) -> str:
        return self._version

    async def load(self) -> None:
        from importlib.metadata import version

        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()
        self._version = f"vader@{version('vaderSentiment')}"
        self.ready = True

    def _score_sync(self, texts: list[str]) -> list[float]:
        return [(self._analyzer.polarity_scores(text)["compound"] + 1.0) / 2.0 for text in texts]

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        texts = [item.prompt + item.response if self.settings.use_prompt else item.response for item in items]
        return Scored(await asyncio.to_thread(self._score_sync, texts), self.model_version)

    def details(self) -> dict:
        return {"range": [0.0, 1.0], "use_prompt": self.settings.use_prompt}
