"""Reward models users bring, served over HTTP, give what transformers gives on the model card's recipe:
decoder RMs with chat templates (Llama, Qwen2), encoder pair RMs (DeBERTa-v2), multi-objective heads,
custom-code models; long items scored whole, or refused or cut with a flag, never cut silently;
OpenRLHF's rendered queries re-rendered with the reward model's own template."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reward_service import config as config_module
from reward_service.app import create_app
from tests.tiny_models import make_tiny_deberta_rm, make_tiny_llama_rm, make_tiny_qwen2_rm

SYSTEM = {"role": "system", "content": "You are a film critic."}
TURNS = [
    {"role": "user", "content": "Was the movie good?"},
    {"role": "assistant", "content": "Yes, moving and funny."},
    {"role": "user", "content": "And the ending?"},
    {"role": "assistant", "content": "A little rushed, but earned."},
]
CONVERSATIONS = {"single": TURNS[:2], "single+system": [SYSTEM, *TURNS[:2]], "multi": TURNS,
                 "multi+system": [SYSTEM, *TURNS]}


def card_recipe(folder, conversation) -> float:
    """Skywork / TRL RewardTrainer: render with the chat template as text, tokenise without a second BOS."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    with torch.no_grad():
        return model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0][0].item()


def client_for(backend: dict) -> TestClient:
    settings = config_module.parse(json.dumps({"default_backend": "rm", "backends": {"rm": backend}}), "test", {})
    return TestClient(create_app(settings, load_in_background=False))


def score(client, items, **fields):
    r = client.post("/score", json={"items": items, **fields})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module", params=[make_tiny_llama_rm, make_tiny_qwen2_rm], ids=["llama", "qwen2"])
def decoder_rm(request, tmp_path_factory, smollm2_dir):
    return request.param(tmp_path_factory.mktemp("decoder-rm"), smollm2_dir, max_position_embeddings=4096)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_conversations_and_pairs_score_as_the_model_card_says(decoder_rm, runtime):
    expected = {name: card_recipe(decoder_rm, c) for name, c in CONVERSATIONS.items()}
    with client_for({"type": "learned-rm", "model": str(decoder_rm), "runtime": runtime, "precision": "fp32"}) as c:
        as_messages = score(c, [{"messages": conv} for conv in CONVERSATIONS.values()])
        single = CONVERSATIONS["single"]
        as_pair = score(c, [{"prompt": single[0]["content"], "response": single[1]["content"]}])
        as_prompt_messages = score(c, [{"prompt": TURNS[:3], "response": TURNS[3]["content"]}])
        details = {b["name"]: b for b in c.get("/v1/backends").json()["backends"]}["rm"]["details"]
    assert as_messages["scores"] == pytest.approx(list(expected.values()), abs=1e-4)
    assert as_pair["scores"] == pytest.approx([expected["single"]], abs=1e-4)
    assert as_prompt_messages["scores"] == pytest.approx([expected["multi"]], abs=1e-4)
    assert "truncated" not in as_messages or as_messages["truncated"] is None
    assert details["formatting"] == "chat_template" and details["max_length"] == 4096


def test_a_3000_token_response_is_scored_whole_and_over_the_limit_is_refused_or_flagged(decoder_rm):
    body = " ".join(["The cinematography lingers on every frame of the harbour at dawn."] * 230)
    endings = [" In the end I loved it.", " In the end I hated it."]
    with client_for({"type": "learned-rm", "model": str(decoder_rm), "runtime": "torch"}) as c:
        long = score(c, [{"prompt": "Review the film.", "response": body + e} for e in endings])
        tokens = len(AutoTokenizer.from_pretrained(decoder_rm)(body)["input_ids"])
        assert tokens > 3000
        assert long["scores"][0] != long["scores"][1]  # the final sentence counts: nothing was cut
        over = c.post("/score", json={"items": [{"prompt": "p", "response": body * 2}]})
        cut = score(c, [{"prompt": "Review the film.", "response": body * 2 + endings[0]}], truncation="left")
    assert over.status_code == 422
    error = over.json()["error"]
    assert error["details"]["item"] == 0 and error["details"]["tokens"] > 4096 == error["details"]["limit"]
    assert "item 0" in error["message"] and "truncation: left" in error["message"]
    assert cut["truncated"] == [True]


def test_pair_encoders_score_as_their_card_says(tmp_path):
    folder = make_tiny_deberta_rm(tmp_path / "deberta")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    question, answer = "How do I boil an egg?", "Simmer it for nine minutes, then cool it in cold water."
    with torch.no_grad():
        expected = model(**tokenizer(question, answer, return_tensors="pt")).logits[0][0].item()
    with client_for({"type": "learned-rm", "model": str(folder), "runtime": "onnx", "precision": "fp32"}) as c:
        got = score(c, [{"prompt": question, "response": answer}])
    assert got["scores"] == pytest.approx([expected], abs=1e-4)


def test_a_multi_objective_head_names_its_columns_and_forms_the_reward(tmp_path, smollm2_dir):
    folder = make_tiny_llama_rm(tmp_path / "multi", smollm2_dir, num_labels=3)
    objectives = ["helpful", "honest", "verbose"]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    conversation = CONVERSATIONS["single"]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    with torch.no_grad():
        columns = model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0].tolist()
    backend = {"type": "learned-rm", "model": str(folder), "runtime": "torch", "objectives": objectives,
               "reward": {"helpful": 0.7, "honest": 0.3}}
    with client_for(backend) as c:
        got = score(c, [{"messages": conversation}], return_objectives=True, request_id="objectives-1")
        retried_otherwise = c.post("/score", json={"items": [{"messages": conversation}], "request_id": "objectives-1"})
    assert retried_otherwise.status_code == 409  # a request_id names one request: items and options
    assert got["scores"] == pytest.approx([0.7 * columns[0] + 0.3 * columns[1]], abs=1e-4)
    assert got["objectives"] == {name: [pytest.approx(v, abs=1e-4)] for name, v in zip(objectives, columns)}
    with pytest.raises(Exception, match="objectives"):
        with client_for({"type": "learned-rm", "model": str(folder), "runtime": "torch"}) as c:
            assert c.get("/readyz").status_code == 503
            raise RuntimeError(c.get("/readyz?verbose=true").json()["backends"]["rm"]["error"])


CUSTOM_MODEL = '''
import torch
from dataclasses import dataclass
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


class TinyScoreConfig(PretrainedConfig):
    model_type = "tiny-score"

    def __init__(self, vocab_size=30522, hidden_size=8, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        super().__init__(**kwargs)


@dataclass
class TinyScoreOutput(ModelOutput):
    score: torch.FloatTensor = None
    rewards: torch.FloatTensor = None


class TinyScoreModel(PreTrainedModel):
    """Like ArmoRM: the reward is `score`, beside per-objective `rewards`."""

    config_class = TinyScoreConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, 3)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        rewards = self.head(pooled)
        return TinyScoreOutput(score=rewards.mean(-1, keepdim=True), rewards=rewards)
'''


def test_custom_code_loads_only_when_trusted_and_its_reward_is_read_where_configured(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text(CUSTOM_MODEL)
    config = {"architectures": ["TinyScoreModel"], "model_type": "tiny-score", "vocab_size": 30522, "hidden_size": 8,
              "auto_map": {"AutoConfig": "modeling_tiny.TinyScoreConfig",
                           "AutoModelForSequenceClassification": "modeling_tiny.TinyScoreModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, folder / name)
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("modeling_tiny_for_test", folder / "modeling_tiny.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    module.TinyScoreModel(module.TinyScoreConfig()).save_pretrained(folder, safe_serialization=True)
    (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()), **config}))

    untrusted = {"type": "learned-rm", "model": str(folder), "use_prompt": False, "max_length": 64}
    with client_for(untrusted) as c:
        assert c.get("/readyz").status_code == 503  # refused: its code is not run without trust
    trusted = {**untrusted, "trust_remote_code": True, "output": "score"}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = module.TinyScoreModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(**tokenizer("a fine film", return_tensors="pt")).score[0, 0].item()
    with client_for(trusted) as c:
        got = score(c, [{"prompt": "", "response": "a fine film"}])
        details = c.get("/v1/backends").json()["backends"][0]["details"]
    assert got["scores"] == pytest.approx([expected], abs=1e-5)
    assert details["trust_remote_code"] is True and details["runtime"] == "torch" and details["output"] == "score"


def test_openrlhf_queries_in_the_policys_markup_are_rendered_with_the_reward_models_template(tmp_path, smollm2_dir):
    llama3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
              "{{ m['content'] }}<|eot_id|>{% endfor %}")
    folder = make_tiny_llama_rm(tmp_path / "rm", smollm2_dir)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": llama3}))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    conversation = CONVERSATIONS["single+system"]
    policy = AutoTokenizer.from_pretrained(smollm2_dir)  # the policy renders ChatML
    prompt = policy.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
    query = prompt + conversation[-1]["content"] + "<|im_end|>"
    expected = card_recipe(folder, conversation)
    with client_for({"type": "learned-rm", "model": str(folder), "runtime": "torch"}) as c:
        r = c.post("/get_reward", json={"query": [query], "prompts": [prompt], "labels": ["unused"]})
        left_padded = c.post("/get_reward", json={"query": ["<|endoftext|><|endoftext|>" + query], "prompts": [prompt]})
        mismatched = c.post("/get_reward", json={"query": [query], "prompts": ["not the start"]})
        short = c.post("/get_reward", json={"query": [query, query], "prompts": [prompt]})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["rewards"] == pytest.approx([expected], abs=1e-4) and reply["scores"] == reply["rewards"]
    assert reply["extra_logs"] == {} and "chatml" in reply["notes"][0]
    assert left_padded.status_code == 200 and left_padded.json()["rewards"] == reply["rewards"]
    assert mismatched.status_code == 422 and "prompts[0]" in mismatched.json()["error"]["message"]
    assert short.status_code == 422 and "`prompts` has 1 entries for 2 queries" in short.json()["error"]["message"]


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_batch_of_mixed_lengths_gives_one_at_a_time_rewards_whatever_the_pad_ids_and_padding_side(
        tmp_path, smollm2_dir, runtime):
    # The model's own pad id (0, as many Llama-2-era configs say) differs from the tokenizer's pad
    # token (SmolLM2's <|im_end|>), and the tokenizer asks for left padding: the engine must still
    # read each reward where the model does alone.
    folder = make_tiny_qwen2_rm(tmp_path / "rm", smollm2_dir, pad_token_id=0)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    responses = ["ok", "A long, winding answer " * 20, "Fine.", "Two sentences here. And one more."]
    conversations = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": r}]
                     for i, r in enumerate(responses)]
    expected = [card_recipe(folder, c) for c in conversations]
    backend = {"type": "learned-rm", "model": str(folder), "runtime": runtime, "precision": "fp32",
               "batching": {"max_wait_ms": 50}}
    with client_for(backend) as c:
        batched = score(c, [{"messages": conv} for conv in conversations])
    assert batched["scores"] == pytest.approx(expected, abs=1e-4)


def test_train_rm_on_a_causal_lm_base_makes_a_chat_template_rm_served_as_trained(tmp_path, smollm2_dir, capsys):
    from reward_service.cli import main
    from tests.tiny_models import make_tiny_llama_lm

    base = make_tiny_llama_lm(tmp_path / "base", smollm2_dir)
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Review film {i}.", "chosen": " Loved it, moving.",
                                        "rejected": " Dull and long."}) + "\n" for i in range(12)))
    out = tmp_path / "rm"
    main(["train-rm", str(data), "--base", str(base), "-o", str(out), "--max-steps", "2", "--batch-size", "4",
          "--trainable-layers", "1"])
    card = json.loads((out / "model_card.json").read_text())
    assert card["tokenization"]["formatting"] == "chat_template" and card["training"]["trainable_layers"] == 1
    conversation = [{"role": "user", "content": "Review film 3."}, {"role": "assistant", "content": " Loved it."}]
    expected = card_recipe(out, conversation)
    with client_for({"type": "learned-rm", "model": str(out), "runtime": "onnx", "precision": "fp32"}) as c:
        got = score(c, [{"prompt": "Review film 3.", "response": " Loved it."}])
    assert got["scores"] == pytest.approx([expected], abs=1e-4)


def test_a_checkpoint_saved_in_bf16_is_served_in_fp32_on_cpu(tmp_path, smollm2_dir):
    folder = make_tiny_llama_rm(tmp_path / "bf16", smollm2_dir)
    AutoModelForSequenceClassification.from_pretrained(folder).to(torch.bfloat16).save_pretrained(folder)
    conversation = CONVERSATIONS["single"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    with torch.no_grad():
        expected = model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0][0].item()
    with client_for({"type": "learned-rm", "model": str(folder), "runtime": "onnx", "precision": "fp32"}) as c:
        got = score(c, [{"messages": conversation}])
    assert got["scores"] == pytest.approx([expected], abs=1e-4) and got["model"].count("+") == 0


def test_one_request_mixing_a_conversation_and_a_prompt_response_pair(decoder_rm):
    multi, single = CONVERSATIONS["multi+system"], CONVERSATIONS["single"]
    expected = [card_recipe(decoder_rm, multi), card_recipe(decoder_rm, single)]
    assert abs(expected[0] - expected[1]) > 1e-3  # the two items are told apart
    with client_for({"type": "learned-rm", "model": str(decoder_rm), "runtime": "onnx", "precision": "fp32"}) as c:
        got = score(c, [{"messages": multi}, {"prompt": single[0]["content"], "response": single[1]["content"]}])
        swapped = score(c, [{"prompt": single[0]["content"], "response": single[1]["content"]}, {"messages": multi}])
    assert got["scores"] == pytest.approx(expected, abs=1e-4)
    assert swapped["scores"] == pytest.approx(expected[::-1], abs=1e-4)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_tokenizer_without_a_pad_token_serves_mixed_length_batches_as_the_card_recipe(tmp_path, smollm2_dir,
                                                                                         runtime):
    folder = make_tiny_llama_rm(tmp_path / "rm", smollm2_dir, pad_token_id=None)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    assert AutoModelForSequenceClassification.from_pretrained(folder).config.pad_token_id is None
    responses = ["ok", "A long, winding answer " * 20, "Fine.", "Two sentences here. And one more."]
    conversations = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": r}]
                     for i, r in enumerate(responses)]
    expected = [card_recipe(folder, c) for c in conversations]  # one at a time: no padding at all
    backend = {"type": "learned-rm", "model": str(folder), "runtime": runtime, "precision": "fp32",
               "batching": {"max_wait_ms": 50}}
    with client_for(backend) as c:
        batched = score(c, [{"messages": conv} for conv in conversations])
        details = {b["name"]: b for b in c.get("/v1/backends").json()["backends"]}["rm"]["details"]
    assert details["pad_token"] == "eos_token"
    assert batched["scores"] == pytest.approx(expected, abs=1e-4)


def test_normalize_reads_the_mean_and_std_openrlhf_stores_in_config_json(tmp_path, smollm2_dir):
    folder = make_tiny_llama_rm(tmp_path / "openrlhf-rm", smollm2_dir)
    conversation = CONVERSATIONS["single"]
    raw = card_recipe(folder, conversation)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "mean": 0.25, "std": 4.0}))  # as OpenRLHF saves them
    assert not (folder / "model_card.json").exists()
    backend = {"type": "learned-rm", "model": str(folder), "runtime": "torch", "normalize": True}
    with client_for(backend) as c:
        got = score(c, [{"messages": conversation}])
        details = {b["name"]: b for b in c.get("/v1/backends").json()["backends"]}["rm"]["details"]
    assert details["normalization"] == [0.25, 4.0]
    assert got["scores"] == pytest.approx([(raw - 0.25) / 4.0], abs=1e-4)
    with client_for({**backend, "normalize": False}) as c:
        assert score(c, [{"messages": conversation}])["scores"] == pytest.approx([raw], abs=1e-4)


def test_the_readmes_worked_examples_are_valid_config_and_requests(smollm2_dir):
    import re
    from pathlib import Path

    from reward_service.schemas import ScoreRequest

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Bring your own reward model", 1)[1].split("\n## ", 1)[0]
    [yaml_block] = re.findall(r"```yaml\n(.*?)```", section, re.S)
    settings = config_module.parse("default_backend: skywork\n" + yaml_block, "README", {})
    backends = settings.backends
    assert {"skywork", "oasst", "armo", "multi", "openrlhf", "internlm2"} <= set(backends)
    assert backends["openrlhf"].normalize and backends["armo"].output == "score"
    assert backends["internlm2"].trust_remote_code and backends["internlm2"].batching.max_batch_size == 1
    bodies = [json.loads(body) for body in re.findall(r"-d '(.*?)'", section, re.S)]
    assert len(bodies) >= 4
    for body in bodies:
        request = ScoreRequest.model_validate(body)
        assert request.backend in backends
    assert {"skywork", "oasst", "armo"} <= {b["backend"] for b in bodies if any("messages" in i for i in b["items"])}
    # InternLM2's template renders the turns, then its reward token last (where its model reads the reward)
    text = AutoTokenizer.from_pretrained(smollm2_dir).apply_chat_template(
        CONVERSATIONS["single+system"], chat_template=backends["internlm2"].chat_template, tokenize=False)
    assert text.endswith("<|im_start|>assistant\nYes, moving and funny.<|im_end|>\n[UNUSED_TOKEN_130]")


def test_trl_chat_prompts_reach_the_reward_model_as_messages_not_flattened_text(tmp_path, smollm2_dir):
    import httpx

    from trainer_client.trl_adapter import reward_function

    folder = make_tiny_llama_rm(tmp_path / "rm", smollm2_dir)
    prompt = [SYSTEM, TURNS[0]]
    completion = [{"role": "assistant", "content": TURNS[1]["content"]}]
    expected = card_recipe(folder, [*prompt, TURNS[1]])
    flattened = card_recipe(folder, [{"role": "user", "content": SYSTEM["content"] + "\n" + TURNS[0]["content"]},
                                     TURNS[1]])
    assert abs(expected - flattened) > 1e-3  # the test can tell the two apart
    with client_for({"type": "learned-rm", "model": str(folder), "runtime": "torch"}) as c:
        def forward(request: httpx.Request) -> httpx.Response:
            reply = c.post(request.url.path, content=request.content, headers={"content-type": "application/json"})
            return httpx.Response(reply.status_code, content=reply.content, headers=reply.headers)

        reward = reward_function("http://rewards.test", transport=httpx.MockTransport(forward))
        scores = reward(prompts=[prompt], completions=[completion])
    assert scores == pytest.approx([expected], abs=1e-4)


def test_the_readme_layout_names_every_builtin_model_its_builder_module_builds():
    import re
    from pathlib import Path

    from reward_service.model_store import BUILTINS

    layout = (Path(__file__).parent.parent / "README.md").read_text().split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    for model in BUILTINS.values():
        module = model.builder.split(":")[0].rsplit(".", 1)[1]  # e.g. builtin_rm
        [entry] = re.findall(rf"\b{module} \(builds ([^)]*)\)", layout)
        assert model.name in entry, f"README Layout: {module} builds {entry}, not {model.name}"
