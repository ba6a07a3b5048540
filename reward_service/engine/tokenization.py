"""One tokenisation, used by training and serving alike.

A reward model is only as good as the match between the token ids it was trained
on and the ones it is served. Both sides call `encode_texts`, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Encoded:
    """Unpadded token ids per item; the batcher pads per batch."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None = None, max_length: int = 256) -> Encoded:
    """Tokenise single texts, or (text, pair) as a BERT text pair, truncated the same way always."""
    kwargs = dict(truncation="longest_first" if pairs is not None else True, max_length=max_length)
    out = tokenizer(texts, pairs, **kwargs) if pairs is not None else tokenizer(texts, **kwargs)
    ids = out["input_ids"]
    types = out.get("token_type_ids") or [[0] * len(row) for row in ids]
    return Encoded(input_ids=list(ids), token_type_ids=list(types))


def pad_batch(input_ids: list[list[int]], token_type_ids: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad to the longest row; inputs the tokenizer did not give are zeros."""
    width = max(len(row) for row in input_ids)
    batch = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    types = np.zeros((len(input_ids), width), dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for i, (row, type_row) in enumerate(zip(input_ids, token_type_ids)):
        batch[i, : len(row)] = row
        types[i, : len(type_row)] = type_row
        mask[i, : len(row)] = 1
    return {"input_ids": batch, "attention_mask": mask, "token_type_ids": types}
