"""Formatting gives the token ids of each model card's recipe, and never cuts silently."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, LlamaConfig

from reward_service.engine import formatting
from reward_service.engine.formatting import Encoded, FormattingError, TooLong, as_conversation, encode, fit_length
from tests.tiny_models import make_tiny_deberta_rm, make_tiny_llama_rm, make_tiny_qwen2_rm

SYSTEM = {"role": "system", "content": "You are terse."}
SINGLE = as_conversation("What is the capital of France?", "Paris, a city on the Seine.")
MULTI = [
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And an even one?"},
    {"role": "assistant", "content": "2 is the only even prime."},
]
CONVERSATIONS = {"single": SINGLE, "single+system": [SYSTEM, *SINGLE], "multi": MULTI, "multi+system": [SYSTEM, *MULTI]}


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def deberta_rm(tmp_path_factory):
    folder = make_tiny_deberta_rm(tmp_path_factory.mktemp("deberta-rm"))
    return AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()


@pytest.fixture(scope="module", params=[make_tiny_llama_rm, make_tiny_qwen2_rm], ids=["llama", "qwen2"])
def decoder_rm(request, tmp_path_factory, smollm2_dir):
    folder = request.param(tmp_path_factory.mktemp("decoder-rm"), smollm2_dir)
    return AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()


def score(model, item: Encoded) -> torch.Tensor:
    inputs = {"input_ids": torch.tensor([item.input_ids])}
    if item.token_type_ids is not None:
        inputs["token_type_ids"] = torch.tensor([item.token_type_ids])
    with torch.no_grad():
        return model(**inputs, attention_mask=torch.ones_like(inputs["input_ids"])).logits[0][0]


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_chat_template_scores_as_the_model_card_recipe(decoder_rm, name):
    tokenizer, model = decoder_rm
    conversation = CONVERSATIONS[name]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    reference = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        expected = model(**reference).logits[0][0]
    [item] = encode(tokenizer, [conversation])
    assert item.input_ids == reference["input_ids"][0].tolist()
    torch.testing.assert_close(score(model, item), expected, rtol=1e-5, atol=1e-5)
    assert tokenizer.decode(item.input_ids[item.response_start:]).startswith(conversation[-1]["content"])


def test_a_right_padded_batch_scores_as_each_item_alone(decoder_rm):
    tokenizer, model = decoder_rm
    items = encode(tokenizer, list(CONVERSATIONS.values()))
    pad = formatting.pad_token(tokenizer)
    width = max(len(item) for item in items)
    ids = torch.tensor([item.input_ids + [pad.id] * (width - len(item)) for item in items])
    mask = torch.tensor([[1] * len(item) + [0] * (width - len(item)) for item in items])
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(batched, torch.stack([score(model, item) for item in items]), rtol=1e-5, atol=1e-5)


def test_a_template_that_writes_the_bos_does_not_get_a_second_one(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.bos_token = "<|endoftext|>"  # SmolLM2's own BOS is <|im_start|>, which opens every turn
    tokenizer.add_bos_token = True  # as Llama 3's tokenizer does
    template = "{{ bos_token }}" + tokenizer.chat_template
    text = tokenizer.apply_chat_template(SINGLE, chat_template=template, tokenize=False)
    bos = tokenizer.bos_token_id
    assert tokenizer(text).input_ids[:2] == [bos, bos]  # the mistake this guards against
    [item] = encode(tokenizer, [SINGLE], template=template)
    assert item.input_ids == tokenizer(text, add_special_tokens=False).input_ids
    assert item.input_ids[0] == bos and item.input_ids[1] != bos


def test_the_response_starts_where_its_content_does_even_when_the_template_trims_it(smollm2):
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
    [item] = encode(smollm2, [as_conversation("Hi", "  Hello there  ")], template=template)
    assert smollm2.decode(item.input_ids[item.response_start:]) == "Hello there<|im_end|>\n"


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_text_pairs_score_as_the_encoder_model_card_recipe(deberta_rm, name):
    tokenizer, model = deberta_rm
    conversation = CONVERSATIONS[name]
    question = "\n\n".join(message["content"] for message in conversation[:-1])
    with torch.no_grad():
        expected = model(**tokenizer(question, conversation[-1]["content"], return_tensors="pt")).logits[0][0]
    [item] = encode(tokenizer, [conversation])
    assert set(item.token_type_ids[item.response_start:]) == {1}
    torch.testing.assert_close(score(model, item), expected, rtol=1e-5, atol=1e-5)


def test_concat_is_one_text_with_the_tokenizers_special_tokens(smollm2, deberta_rm):
    for tokenizer in (smollm2, deberta_rm[0]):
        [item] = encode(tokenizer, [as_conversation("The movie was", " wonderful.")], mode="concat")
        assert item.input_ids == tokenizer("The movie was wonderful.").input_ids
        assert tokenizer.decode(item.input_ids[item.response_start:], skip_special_tokens=True).strip() == "wonderful."


def test_auto_picks_the_template_then_text_pairs_then_one_text(smollm2_dir, deberta_rm):
    chat = AutoTokenizer.from_pretrained(smollm2_dir)
    encoder = deberta_rm[0]
    assert formatting.resolve_mode(chat) == "chat_template"
    assert formatting.resolve_mode(encoder) == "pair"
    assert formatting.resolve_mode(encoder, template="{{ messages[-1].content }}") == "chat_template"
    chat.chat_template = None
    assert formatting.resolve_mode(chat) == "concat"
    with pytest.raises(ValueError, match="no chat template"):
        formatting.resolve_mode(chat, "chat_template")
    with pytest.raises(ValueError, match="unknown formatting mode"):
        formatting.resolve_mode(chat, "chatml")
    with pytest.raises(ValueError, match="needs mode chat_template"):
        formatting.resolve_mode(encoder, "pair", template="{{ messages }}")


def test_items_the_formatter_cannot_read_are_named(smollm2):
    with pytest.raises(FormattingError, match="item 1: the last message must be the assistant turn"):
        encode(smollm2, [SINGLE, SINGLE[:1]])
    refusing = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(FormattingError, match="item 0: the chat template refused .*roles must alternate"):
        encode(smollm2, [SINGLE], template=refusing)


def test_reject_names_the_item_its_token_count_and_the_limit(smollm2):
    items = encode(smollm2, [SINGLE, MULTI])
    limit = len(items[1]) - 1
    assert len(items[0]) <= limit
    with pytest.raises(TooLong) as error:
        fit_length(items, limit, "reject")
    assert (error.value.index, error.value.tokens, error.value.limit) == (1, len(items[1]), limit)
    assert f"item 1: {len(items[1])} tokens" in str(error.value) and str(limit) in str(error.value)


def test_left_cuts_the_prompt_keeps_the_head_and_the_whole_response(smollm2):
    long_question = [SYSTEM, *as_conversation("Tell me more. " * 40, "No.")]
    short, long = encode(smollm2, [SINGLE, long_question])
    limit = len(short)
    response = long.input_ids[long.response_start:]
    kept_prompt = limit - 1 - len(response)
    assert len(long) > limit and kept_prompt > 0
    kept, cut = fit_length([short, long], limit, "left")
    assert kept == short and not kept.truncated
    assert cut.truncated and len(cut) == limit
    assert cut.input_ids[0] == long.input_ids[0] == smollm2.bos_token_id
    assert cut.input_ids[cut.response_start:] == response
    assert cut.input_ids[1:cut.response_start] == long.input_ids[long.response_start - kept_prompt:long.response_start]


def test_a_response_over_the_limit_keeps_its_last_tokens(smollm2, deberta_rm):
    for tokenizer in (smollm2, deberta_rm[0]):
        [item] = encode(tokenizer, [as_conversation("Question?", " ".join(["word"] * 40) + " the end")])
        [cut] = fit_length([item], 10, "left")
        assert cut.truncated and len(cut) == 10 and cut.response_start == cut.prompt_start == 1
        assert cut.input_ids == item.input_ids[:1] + item.input_ids[-9:]
        if item.token_type_ids is not None:
            assert cut.token_type_ids == item.token_type_ids[:1] + item.token_type_ids[-9:]


def test_left_cuts_a_text_pair_from_the_start_of_the_question(deberta_rm):
    tokenizer = deberta_rm[0]
    [item] = encode(tokenizer, [as_conversation("one two three four five", "six seven")])
    [cut] = fit_length([item], len(item) - 2, "left")
    assert tokenizer.decode(cut.input_ids) == "[CLS] three four five [SEP] six seven [SEP]"
    assert cut.token_type_ids == [0, 0, 0, 0, 0, 1, 1, 1]


def test_the_length_limit_is_the_least_of_positions_tokenizer_and_config(smollm2, deberta_rm):
    decoder = LlamaConfig(max_position_embeddings=256)
    assert smollm2.model_max_length > 10**29  # the "no limit" sentinel is ignored
    assert formatting.model_length_limit(decoder, smollm2) == 256
    assert formatting.model_length_limit(decoder, smollm2, configured=100) == 100
    assert formatting.model_length_limit(BertConfig(max_position_embeddings=514), deberta_rm[0]) == 512


def test_the_pad_token_falls_back_to_eos_and_says_so(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert formatting.pad_token(tokenizer) == (tokenizer.pad_token_id, "pad_token")
    tokenizer.pad_token = None
    assert formatting.pad_token(tokenizer) == (tokenizer.eos_token_id, "eos_token")
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="neither a pad token nor an EOS token"):
        formatting.pad_token(tokenizer)


def exchanges(count: int) -> list[dict]:
    """`count` earlier user/assistant exchanges, each long enough to matter, then the last question."""
    turns = []
    for i in range(count):
        turns += [{"role": "user", "content": f"Question {i} about the harbour, in detail. " * 6},
                  {"role": "assistant", "content": f"Answer {i}: it is old and it is busy. " * 6}]
    return [*turns, {"role": "user", "content": "And the lighthouse?"}]


@pytest.mark.parametrize("kept", [0, 1, 3])
def test_left_drops_the_fewest_earliest_whole_turns_that_make_it_fit(smollm2, kept):
    scored = {"role": "assistant", "content": "Still lit, every night."}
    turns = exchanges(5)
    conversation = [SYSTEM, *turns, scored]
    expected = encode(smollm2, [[SYSTEM, *turns[len(turns) - 1 - 2 * kept:], scored]])[0]
    one_more = encode(smollm2, [[SYSTEM, *turns[len(turns) - 3 - 2 * kept:], scored]])[0]
    [whole] = encode(smollm2, [conversation])
    limit = len(one_more) - 1  # the next-earlier exchange no longer fits
    assert len(expected) <= limit < len(whole)
    [cut] = fit_length([whole], limit, "left")
    assert cut.truncated
    assert cut.input_ids == expected.input_ids and cut.response_start == expected.response_start
    text = smollm2.decode(cut.input_ids)
    # What remains opens with the system turn's own header, then a whole user turn: nothing starts mid-way.
    first_user = turns[len(turns) - 1 - 2 * kept]["content"]
    assert text.startswith(f"<|im_start|>system\n{SYSTEM['content']}<|im_end|>\n<|im_start|>user\n{first_user}")


def test_left_cuts_tokens_only_when_the_last_question_alone_is_still_too_long(smollm2):
    scored = {"role": "assistant", "content": "Still lit."}
    last = {"role": "user", "content": "Tell me about the lighthouse keeper. " * 30}
    conversation = [SYSTEM, *exchanges(2)[:-1], last, scored]
    [whole] = encode(smollm2, [conversation])
    # SmolLM2's template writes its own longer default system message when none is given, so the
    # shortest re-render keeps the configured system message.
    [reduced] = encode(smollm2, [[SYSTEM, last, scored]])
    limit = len(reduced) - 20
    [cut] = fit_length([whole], limit, "left")
    assert cut.truncated and len(cut) == limit
    assert cut.input_ids == reduced.input_ids[:1] + reduced.input_ids[len(reduced) - (limit - 1):]
    assert cut.input_ids[cut.response_start:] == reduced.input_ids[reduced.response_start:]
    assert "harbour" not in smollm2.decode(cut.input_ids)  # the earlier turns went whole, first


def test_left_drops_a_long_system_message_whole_once_the_earlier_turns_are_gone(smollm2):
    llama3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
              "{{ m['content'] }}<|eot_id|>{% endfor %}")
    system = {"role": "system", "content": "You review films, and you always explain yourself at length. " * 10}
    single = as_conversation("Was it good?", "Yes.")
    [whole] = encode(smollm2, [[system, *single]], template=llama3)
    [expected] = encode(smollm2, [single], template=llama3)
    [cut] = fit_length([whole], len(expected), "left")
    assert cut.truncated and cut.input_ids == expected.input_ids
