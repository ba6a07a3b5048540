"""The values every layer passes around: one item to score, the options of a request, the answer.

Routes build items from requests; the scorer, the backends, the engine and the
human queue read them. Living here, at the bottom, lets each of those import
them without importing one another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import NamedTuple

TURN_SEPARATOR = "\n\n"  # between earlier turns when a conversation is read as plain text
# Pad and end-of-sequence tokens of common tokenizers: a policy's decoded text (OpenRLHF's query,
# left-padded for generation) may start or end with them.
PAD_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "<eos>", "</s>",
              "<unk>")


def without_leading_padding(text: str) -> str:
    """`text` with the pad tokens (and whitespace between them) it starts with removed."""
    while True:
        stripped = text.lstrip()
        token = next((t for t in PAD_TOKENS if stripped.startswith(t)), None)
        if token is None:
            return text
        text = stripped[len(token):]


class Message(NamedTuple):
    role: str  # system | user | assistant | tool
    content: str


@dataclass(frozen=True)
class Item:
    """What one reward is given for: the policy's response, what it answered, and optionally
    the known answer (`reference`) that verifiable-reward backends check it against.

    `context` holds the conversation before the response when the request sent chat messages;
    then `prompt` is that conversation as plain text (contents joined by a blank line), for
    backends that read text. A (prompt, response) pair has no context. A `rendered` item's
    text still carries the policy's chat markup; a model with its own chat template recovers
    the conversation from it."""

    prompt: str
    response: str
    context: tuple[Message, ...] | None = None
    reference: str | None = None
    rendered: bool = False  # prompt + response is a policy's chat-rendered text (OpenRLHF's query)

    @classmethod
    def from_messages(cls, messages: list[Message], reference: str | None = None) -> "Item":
        """A conversation whose last message is the assistant turn being scored."""
        *context, last = messages
        return cls(TURN_SEPARATOR.join(m.content for m in context), last.content, tuple(context), reference)

    def conversation(self) -> list[dict[str, str]]:
        """The chat a model with a chat template is shown: the context (or the prompt as one
        user turn), then the response as the assistant turn."""
        before = [m._asdict() for m in self.context] if self.context is not None else \
            [{"role": "user", "content": self.prompt}]
        return [*before, {"role": "assistant", "content": self.response}]

    def key(self) -> list:
        """What identifies the item for idempotency fingerprints (JSON-serialisable)."""
        if self.context is None and self.reference is None and not self.rendered:
            return [self.prompt, self.response]  # as before conversations and references existed
        return [self.prompt, self.response, [list(m) for m in self.context or ()], self.reference, self.rendered]


def fingerprint(value: list) -> str:
    """A hash of what a request asked (its items' keys, and options), to tell a retry from a new request."""
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


class Verdict(NamedTuple):
    """A verifiable reward's outcome for one item: why it scored what it did."""

    outcome: str  # e.g. correct | wrong | no_answer | timeout; passed_all | some_failed | no_code; passed | failed
    seconds: float | None  # time the check took (worker or sandbox), when measured


@dataclass(frozen=True)
class ScoreOptions:
    """Per-request choices a backend honours: `truncation` overrides the backend's length
    policy (`reject` or `left`); `objectives` asks multi-objective heads for every column."""

    truncation: str | None = None
    objectives: bool = False


@dataclass(frozen=True)
class Scored:
    """A backend's answer for a list of items: one score each, and the exact version of what
    produced them (read together, so a hot reload mid-request cannot mismatch them)."""

    scores: list[float]
    model: str
    members: dict[str, list[float]] | None = None  # ensembles: each member's own scores
    truncated: list[bool] | None = None  # items cut to fit the model (None: nothing was cut)
    objectives: dict[str, list[float]] | None = None  # multi-objective heads: every named column
    notes: list[str] | None = None  # what was done that a caller should know (e.g. how input was read)
    verdicts: dict[str, list[Verdict]] | None = None  # verifiable rewards: backend name -> each item's outcome
