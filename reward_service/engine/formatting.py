"""Formatting: one scored item -> the token ids its reward model's card says to feed it.

An item is a conversation: a list of {"role", "content"} messages whose last message is the
assistant turn being scored. A (prompt, response) pair is `as_conversation(prompt, response)`,
always two turns: an empty prompt keeps its (empty) user turn, because templates that enforce
user/assistant alternation reject a lone assistant turn, and one pair must map to one
conversation whatever the mode.

Modes (per backend, by config):
- `chat_template`: render with the tokenizer's chat template (or a custom Jinja template), then
  tokenise the text with `add_special_tokens=False`: the template writes any BOS itself, so it is
  never doubled. The recipe of Skywork-Reward, Llama-3 RM cards and TRL's RewardTrainer.
- `pair`: `tokenizer(prompt_text, response)` as a text pair, the recipe of encoder reward models
  (OpenAssistant's DeBERTa: `tokenizer(question, answer)`).
- `concat`: `prompt_text + response` as one text, with the special tokens the tokenizer adds.
- `auto` (default): a chat template (the tokenizer's or a custom one) -> `chat_template`; else a
  tokenizer with a separator token (`sep_token`: BERT, DeBERTa, RoBERTa, XLM-R — the tokenizers
  built for text pairs) -> `pair`; else -> `concat`. The rule reads only the tokenizer, what the
  model card's recipe reads too; a decoder reward model whose tokenizer declares a separator
  (rare) must name its mode.
`prompt_text` is the contents of every turn before the scored one (system included, roles
dropped) joined by a blank line; for a (prompt, response) pair it is exactly the prompt.

Invariants:
- Every `Encoded` item is [head | prompt | response]: the head is a leading BOS/CLS token (or
  nothing), the response runs from the first token of the scored turn's content to the end
  (closing template tokens included).
- Lengths are counted after formatting and nothing is cut silently: `fit_length` either rejects
  an item (`TooLong`) or shortens it from the left and sets `truncated`. Shortening is turn-aware:
  first whole earliest turns are dropped and the rest re-rendered (system messages stay until
  every earlier turn is gone, then go too; the turn just before the scored one is never dropped
  whole), so what remains starts at a turn's own header. Only if that is still too long are
  tokens cut from the start of the prompt part: the head stays (a leading token the tokenizer
  names BOS or CLS; SmolLM2 names `<|im_start|>`), the response stays whole, or keeps its last
  tokens when it alone is over the limit.
- Requires a fast tokenizer: token offsets locate the response.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import jinja2

from reward_service.items import TURN_SEPARATOR, Item

MODES = ("auto", "chat_template", "pair", "concat")
LENGTH_POLICIES = ("reject", "left")
# Stands in for the scored turn's content to find where it starts in a rendered template:
# a private-use character no real content starts with.
_PROBE = "\ue000"
# Tokenizers without a known limit report this sentinel (int(1e30)) as model_max_length.
_NO_LIMIT = 10**29
_POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class FormattingError(ValueError):
    """One item cannot be formatted; `index` is its place in the batch."""

    def __init__(self, index: int, message: str):
        super().__init__(f"item {index}: {message}")
        self.index = index


class TooLong(FormattingError):
    def __init__(self, index: int, tokens: int, limit: int):
        super().__init__(index, f"{tokens} tokens after formatting, over the model's limit of {limit} "
                                "(reject it, or truncate from the left by config)")
        self.tokens = tokens
        self.limit = limit


@dataclass(frozen=True)
class Source:
    """What an item was formatted from, so `fit_length` can re-render it with fewer turns."""

    tokenizer: object
    messages: tuple[dict, ...]
    mode: str  # concrete (never `auto`)
    template: str | None


@dataclass(frozen=True)
class Encoded:
    """One item's unpadded ids: ids[:prompt_start] the head, ids[response_start:] the response."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    prompt_start: int
    response_start: int
    truncated: bool = False
    source: Source | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    def features(self) -> dict[str, list[int]]:
        """The model inputs it carries, by name (what the engine pads into a batch)."""
        if self.token_type_ids is None:
            return {"input_ids": self.input_ids}
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids}


class PadToken(NamedTuple):
    id: int
    source: str  # "pad_token", or "eos_token" when the tokenizer has no pad token (or "model config")


def as_conversation(prompt: str, response: str) -> list[dict[str, str]]:
    """The conversation a (prompt, response) pair stands for: a user turn, then the scored turn."""
    return Item(prompt, response).conversation()


def resolve_mode(tokenizer, mode: str = "auto", template: str | None = None) -> str:
    """The concrete mode `auto` means for this tokenizer; checks a named mode can run."""
    if mode not in MODES:
        raise ValueError(f"unknown formatting mode {mode!r}; known: {', '.join(MODES)}")
    has_template = bool(template or tokenizer.chat_template)
    if template and mode not in ("auto", "chat_template"):
        raise ValueError(f"a custom chat template needs mode chat_template, not {mode}")
    if mode == "chat_template" and not has_template:
        raise ValueError("mode chat_template: the tokenizer has no chat template and none is configured")
    if mode != "auto":
        return mode
    if has_template:
        return "chat_template"
    return "pair" if tokenizer.sep_token is not None else "concat"


def encode(tokenizer, conversations: list[list[dict]], mode: str = "auto",
           template: str | None = None) -> list[Encoded]:
    """Format and tokenise a batch of conversations in one tokenizer call; nothing is cut here."""
    mode = resolve_mode(tokenizer, mode, template)
    if not tokenizer.is_fast:
        raise ValueError("formatting needs a fast tokenizer (token offsets locate the response)")
    for index, messages in enumerate(conversations):
        if not messages or messages[-1].get("role") != "assistant":
            raise FormattingError(index, "the last message must be the assistant turn being scored")
    if not conversations:
        return []
    if mode == "pair":
        items = _encode_pairs(tokenizer, conversations)
    else:
        if mode == "chat_template":
            rendered = [_render(tokenizer, index, messages, template) for index, messages in enumerate(conversations)]
        else:
            rendered = [_join(messages) for messages in conversations]
        texts, response_chars = zip(*rendered)
        # A template writes its own special tokens; one plain text gets the tokenizer's.
        batch = tokenizer(list(texts), add_special_tokens=mode == "concat", return_offsets_mapping=True)
        starts = [next((token for token, (_, end) in enumerate(offsets) if end > char), len(offsets))
                  for offsets, char in zip(batch["offset_mapping"], response_chars)]
        items = _items(tokenizer, batch, starts)
    return [replace(item, source=Source(tokenizer, tuple(messages), mode, template))
            for item, messages in zip(items, conversations)]


def fit_length(items: list[Encoded], max_length: int, policy: str = "reject") -> list[Encoded]:
    """Items within `max_length` tokens: `reject` raises `TooLong` for the first one over it;
    `left` drops the earliest whole turns (re-rendered), then, if still over, cuts the prompt from
    its start, keeping the head and the response whole, or only the response's last tokens when
    the response alone is over the limit; shortened items say `truncated`."""
    if policy not in LENGTH_POLICIES:
        raise ValueError(f"unknown length policy {policy!r}; known: {', '.join(LENGTH_POLICIES)}")
    if max_length < 1:
        raise ValueError(f"max_length must be positive, not {max_length}")
    fitted = []
    for index, item in enumerate(items):
        if len(item) <= max_length:
            fitted.append(item)
        elif policy == "reject":
            raise TooLong(index, len(item), max_length)
        else:
            fitted.append(_fit_left(item, max_length))
    return fitted


def model_length_limit(config, tokenizer, configured: int | None = None) -> int:
    """The most tokens the model reads: the least of its position table (from the config), the
    tokenizer's `model_max_length` (unless it is the no-limit sentinel) and the configured cap."""
    config = config.get_text_config()
    values = (getattr(config, field, None) for field in _POSITION_FIELDS)
    positions = next((value for value in values if isinstance(value, int)), None)
    tokenizer_limit = tokenizer.model_max_length if tokenizer.model_max_length < _NO_LIMIT else None
    known = [limit for limit in (positions, tokenizer_limit, configured) if limit]
    if not known:
        raise ValueError("neither the model config nor the tokenizer states a length limit; configure max_length")
    return min(known)


def pad_token(tokenizer) -> PadToken:
    """The tokenizer's id to pad batches with: its pad token, else its EOS (decoder tokenizers often
    have no pad token), and which one it is so the caller can say so. Padding is on the right and
    masked. A model whose config names its own pad id should be padded with that one instead: its
    head reads the reward at the last token that is not its pad id (transformers' rule)."""
    if tokenizer.pad_token_id is not None:
        return PadToken(tokenizer.pad_token_id, "pad_token")
    if tokenizer.eos_token_id is not None:
        return PadToken(tokenizer.eos_token_id, "eos_token")
    raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")


def _prompt_text(messages: list[dict]) -> str:
    return TURN_SEPARATOR.join(message["content"] for message in messages[:-1])


def _join(messages: list[dict]) -> tuple[str, int]:
    """The concatenated text and the character where the response starts."""
    prompt = _prompt_text(messages)
    return prompt + messages[-1]["content"], len(prompt)


def _render(tokenizer, index: int, messages: list[dict], template: str | None) -> tuple[str, int]:
    """The rendered text and the character where the scored turn's content starts: where the
    render first differs from one with a probe in place of that content."""
    probe = [*messages[:-1], {**messages[-1], "content": _PROBE}]
    try:
        text, probed = [tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False)
                        for conversation in (messages, probe)]
    except jinja2.TemplateError as exc:
        raise FormattingError(index, f"the chat template refused the conversation: {exc}") from None
    return text, len(os.path.commonprefix([text, probed]))


def _encode_pairs(tokenizer, conversations: list[list[dict]]) -> list[Encoded]:
    batch = tokenizer([_prompt_text(m) for m in conversations], [m[-1]["content"] for m in conversations])
    sequences = [batch.sequence_ids(i) for i in range(len(conversations))]
    return _items(tokenizer, batch, [ids.index(1) if 1 in ids else len(ids) for ids in sequences])


def _items(tokenizer, batch, response_starts: list[int]) -> list[Encoded]:
    """Items from a batch tokenizer output, given where each response starts."""
    heads = {tokenizer.bos_token_id, tokenizer.cls_token_id} - {None}
    types = batch.get("token_type_ids")
    items = []
    for i, (ids, response_start) in enumerate(zip(batch["input_ids"], response_starts)):
        prompt_start = int(bool(ids) and ids[0] in heads and response_start > 0)
        items.append(Encoded(ids, types[i] if types else None, prompt_start, response_start))
    return items


def _fit_left(item: Encoded, max_length: int) -> Encoded:
    """`item` within `max_length`: the fewest earliest turns dropped that make it fit, else the
    shortest re-render cut by tokens from the left."""
    source = item.source
    if source is None:  # not made by `encode`: nothing to re-render
        return _cut_left(item, max_length)
    *prompt, scored = source.messages
    system = next((i for i, message in enumerate(prompt) if message.get("role") != "system"), len(prompt))
    turns = prompt[system:]
    # Each cut keeps the turns from a user turn on (templates that enforce alternation refuse a
    # conversation opening with the assistant), or only the turn just before the scored one.
    cuts = [[*prompt[:system], *turns[k:], scored] for k in range(1, len(turns))
            if turns[k].get("role") == "user" or k == len(turns) - 1]
    if system and turns:  # then the system messages, once every earlier turn is gone
        cuts.append([turns[-1], scored])
    renders: dict[int, Encoded | None] = {}

    def render(k: int) -> Encoded | None:
        if k not in renders:
            try:
                [renders[k]] = encode(source.tokenizer, [cuts[k]], source.mode, source.template)
            except FormattingError:  # the template refuses this cut
                renders[k] = None
        return renders[k]

    def fits(k: int) -> bool:
        shorter = render(k)
        return shorter is not None and len(shorter) <= max_length

    # Fewer turns render to fewer tokens: bisect for the first cut that fits (a few renders, not one per turn).
    low, high = 0, len(cuts)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    if low < len(cuts) and fits(low):
        return replace(render(low), truncated=True)
    # Nothing fits whole: cut tokens from the shortest of the most reduced renders.
    shortest = min((r for r in (render(k) for k in range(len(cuts) - 2, len(cuts)) if k >= 0) if r is not None),
                   key=len, default=item)
    return _cut_left(shortest if len(shortest) < len(item) else item, max_length)


def _cut_left(item: Encoded, max_length: int) -> Encoded:
    head = min(item.prompt_start, max_length - 1)
    budget = max_length - head
    response_keep = min(budget, len(item) - item.response_start)
    prompt_keep = budget - response_keep
    spans = (slice(0, head), slice(item.response_start - prompt_keep, item.response_start),
             slice(len(item) - response_keep, len(item)))

    def take(values: list[int]) -> list[int]:
        return [value for span in spans for value in values[span]]

    types = take(item.token_type_ids) if item.token_type_ids is not None else None
    return replace(item, input_ids=take(item.input_ids), token_type_ids=types, prompt_start=head,
                   response_start=head + prompt_keep, truncated=True)
