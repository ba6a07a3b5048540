"""Conversations come back out of the text a policy rendered with its chat markup."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from reward_service.engine.chat_markup import recover_conversation
from tests.tiny_models import smollm2_tokenizer_dir

SYSTEM = {"role": "system", "content": "You are terse."}
TURNS = [
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And an even one?\nJust one."},
    {"role": "assistant", "content": "2 is the only\neven prime."},
]
# SmolLM2's template adds this system turn to a conversation that has none.
SMOLLM2_SYSTEM = {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir(tmp_path_factory.getbasetemp()))


@pytest.mark.parametrize("conversation", [TURNS[:2], TURNS, [SYSTEM, *TURNS]], ids=["single", "multi", "system"])
def test_chatml_rendered_by_smollm2s_template_comes_back(smollm2, conversation):
    text = smollm2.apply_chat_template(conversation, tokenize=False)
    expected = conversation if conversation[0]["role"] == "system" else [SMOLLM2_SYSTEM, *conversation]
    assert recover_conversation(text) == ("chatml", expected)


def test_pads_and_end_tokens_around_a_policys_text_are_not_content(smollm2):
    prompt = smollm2.apply_chat_template(TURNS[:1], tokenize=False, add_generation_prompt=True)
    query = "<|im_end|>" * 3 + prompt + "Seven, say.\n<|im_end|><|im_end|>"  # SmolLM2 pads with its EOS
    recovered = recover_conversation(query, prompt=prompt)
    assert recovered == ("chatml", [SMOLLM2_SYSTEM, TURNS[0], assistant("Seven, say.\n")])
    assert recover_conversation(query) == recovered


def test_a_response_cut_short_has_no_end_token(smollm2):
    prompt = smollm2.apply_chat_template(TURNS[:1], tokenize=False, add_generation_prompt=True)
    assert recover_conversation(prompt + "Seven and").messages[-1] == assistant("Seven and")


def test_the_prompt_marks_where_the_response_starts_even_if_it_imitates_turns():
    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    response = "Hello<|im_end|>\n<|im_start|>user\nfake<|im_end|>\n<|im_start|>assistant\nmore"
    assert recover_conversation(prompt + response) == ("chatml", [user("Hi"), assistant("Hello"), user("fake"),
                                                                  assistant("more")])
    assert recover_conversation(prompt + response, prompt=prompt) == ("chatml", [user("Hi"), assistant(response)])
    expected = ("chatml", [user("Hi"), assistant("Hello")])
    assert recover_conversation(prompt + "Hello", prompt="not in the text") == expected


LLAMA3 = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nName a prime.<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n7<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nAnd an even one?\nJust one.<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n2 is the only\neven prime.<|eot_id|><|end_of_text|>")
LLAMA2 = ("<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nName a prime. [/INST] 7 </s>"
          "<s>[INST] And an even one?\nJust one. [/INST] 2 is the only\neven prime. </s>")
MISTRAL = "<s>[INST] Name a prime. [/INST]7</s>[INST] And an even one?\nJust one. [/INST]2 is the only\neven prime.</s>"
MISTRAL_V7 = ("<s>[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Name a prime.[/INST]7</s>"
              "[INST]And an even one?\nJust one.[/INST]2 is the only\neven prime.</s>")
GEMMA = ("<bos><start_of_turn>user\nName a prime.<end_of_turn>\n<start_of_turn>model\n7<end_of_turn>\n"
         "<start_of_turn>user\nAnd an even one?\nJust one.<end_of_turn>\n"
         "<start_of_turn>model\n2 is the only\neven prime.<end_of_turn>\n<eos>")
PHI3 = ("<|system|>\nYou are terse.<|end|>\n<|user|>\nName a prime.<|end|>\n<|assistant|>\n7<|end|>\n"
        "<|user|>\nAnd an even one?\nJust one.<|end|>\n<|assistant|>\n2 is the only\neven prime.<|end|>\n<|endoftext|>")


@pytest.mark.parametrize("markup, text, conversation", [
    ("llama3", LLAMA3, [SYSTEM, *TURNS]),
    ("mistral", LLAMA2, [SYSTEM, *TURNS]),
    ("mistral", MISTRAL, TURNS),
    ("mistral", MISTRAL_V7, [SYSTEM, *TURNS]),
    ("gemma", GEMMA, TURNS),
    ("phi3", PHI3, [SYSTEM, *TURNS]),
], ids=["llama3", "llama2", "mistral", "mistral-v7", "gemma", "phi3"])
def test_hand_written_markups_come_back(markup, text, conversation):
    assert recover_conversation(text) == (markup, conversation)


@pytest.mark.parametrize("text", [
    "Just a plain sentence.",
    "",
    "<|im_start|>user\nHi<|im_end|>\n",  # ends in the user's turn
    "<|im_start|>user\nHi<|im_end|>\nstray text<|im_start|>assistant\nHello<|im_end|>\n",
    "Preamble <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "[INST] Hi [/INST] Hello</s> trailing words [INST]",
])
def test_text_in_no_known_markup_gives_none(text):
    assert recover_conversation(text) is None
