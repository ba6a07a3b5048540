"""One tokenisation, used by training and serving alike, and padding rows into a batch.

A reward model is only as good as the match between the token ids it was trained
on and the ones it is served. Both sides format through `engine.formatting`
(training via `encode_conversations` here), so they cannot drift.

An encoded item is `Features`: the token-level inputs the tokenizer gives, by name
(`input_ids`, and `token_type_ids` for encoders that take segments). Which inputs a
model takes is the model's business: `pad_batch` fills exactly those, zeros for any
the tokenizer did not give, and derives `attention_mask` from the row lengths.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Features = dict[str, list[int]]  # one item: input name -> token-level values, `input_ids` always present


def encode_conversations(tokenizer, conversations: list[list[dict]], mode: str, max_length: int) -> list[Features]:
    """Training's encoding: formatted exactly as served (`mode`: see `engine.formatting`), an
    example over `max_length` cut from the left as `truncation: left` serves it."""
    from reward_service.engine import formatting

    encoded = formatting.encode(tokenizer, conversations, mode)
    return [item.features() for item in formatting.fit_length(encoded, max_length, "left")]


def pad_batch(rows: list[Features], pad_id: int, input_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Right-pad every row to the longest: `input_ids` with `pad_id`, other inputs with zeros.
    `input_names`: what the model takes (default: what the rows carry, plus `attention_mask`)."""
    if input_names is None:
        input_names = [*rows[0], "attention_mask"]
    lengths = np.fromiter((len(row["input_ids"]) for row in rows), dtype=np.int64, count=len(rows))
    filled = np.arange(lengths.max()) < lengths[:, None]  # True where a row has a token
    batch = {}
    for name in input_names:
        if name == "attention_mask":
            batch[name] = filled.astype(np.int64)
            continue
        values = np.full(filled.shape, pad_id if name == "input_ids" else 0, dtype=np.int64)
        if all(name in row for row in rows):
            values[filled] = np.fromiter((v for row in rows for v in row[name]), dtype=np.int64,
                                         count=int(lengths.sum()))
        batch[name] = values
    return batch
