"""Chat markup: recover a conversation from a policy's already-rendered text.

OpenRLHF sends a reward server `query`, the policy's prompt + response decoded with their special
tokens (and often pad tokens) kept, and `prompts`, the rendered prompts. A reward model with its
own chat template needs the conversation back, so `recover_conversation` recognises the markups of
the common chat templates:

- `chatml`  `<|im_start|>role\\n...<|im_end|>` (Qwen, SmolLM2, many others)
- `llama3`  `<|begin_of_text|><|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`
- `mistral` `<s>[INST] ... [/INST] ...</s>` (also Llama 2 with `<<SYS>>`, and `[SYSTEM_PROMPT]`)
- `gemma`   `<bos><start_of_turn>user\\n...<end_of_turn>` (role `model` is the assistant)
- `phi3`    `<|user|>\\n...<|end|>`

Rules, so that nothing is guessed:
- Apart from pad, BOS and EOS tokens at its two ends, the text must consist of turns of one markup
  and nothing else, and its last turn must be the assistant's; otherwise the answer is None. Each
  markup opens with its own token, so at most one can fit; were two to fit, the answer is None.
- The last turn may lack its end-of-turn token (a generation cut short); trailing end tokens are not
  content. Contents are kept verbatim, except in `mistral`, whose markup pads turns with spaces:
  there contents are stripped.
- The markup's name comes back with the messages, so the caller can report what it did.
- Given `prompt` (the rendered prompt, ending where the response starts) and found in the text,
  everything after it is the response, even text that looks like markup (a policy imitating a
  user turn); otherwise the whole text is parsed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from reward_service.items import PAD_TOKENS

FILLERS = PAD_TOKENS  # pad and end-of-sequence tokens, stripped from both ends of a text
# Stands in for the response to parse a prompt that ends where the response starts.
_PROBE = "\ue000"


class Recovered(NamedTuple):
    markup: str
    messages: list[dict[str, str]]


class Markup:
    """One markup: how its turns read, and the tokens that may pad a text at either end."""

    def __init__(self, name: str, bos: str, end_of_turn: str):
        self.name = name
        edges = "|".join(re.escape(token) for token in (*FILLERS, bos, end_of_turn) if token)
        self._leading = re.compile(rf"\A\s*(?:(?:{edges})\s*)*")
        self._trailing = re.compile(rf"(?:{edges})(?:\s*(?:{edges}))*\s*\Z")

    def recover(self, text: str, prompt: str | None) -> list[dict[str, str]] | None:
        if prompt and prompt in text:
            split = text.index(prompt) + len(prompt)
            messages = self.parse(text[:split] + _PROBE)
            if messages and messages[-1]["content"] == _PROBE:
                messages[-1]["content"] = self.tidy(self._trailing.sub("", text[split:]))
                return messages
        return self.parse(text)

    def parse(self, text: str) -> list[dict[str, str]] | None:
        messages = self.turns(self._trailing.sub("", self._leading.sub("", text, count=1), count=1))
        return messages if messages and messages[-1]["role"] == "assistant" else None

    def turns(self, text: str) -> list[dict[str, str]] | None:
        """All of `text` as messages, or None where some of it is not a turn."""
        raise NotImplementedError

    def tidy(self, content: str) -> str:
        return content


class HeaderMarkup(Markup):
    """Turns of the form: opening token, role, end of header, content, end-of-turn token."""

    def __init__(self, name: str, bos: str, opening: str, role: str, header_end: str, end_of_turn: str,
                 roles: dict[str, str] | None = None):
        super().__init__(name, bos, end_of_turn)
        self._turn = re.compile(rf"{re.escape(opening)}(?P<role>{role}){re.escape(header_end)}"
                                rf"(?P<content>.*?)(?:{re.escape(end_of_turn)}\s*|\Z)", re.DOTALL)
        self._roles = roles or {}

    def turns(self, text: str) -> list[dict[str, str]] | None:
        messages, position = [], 0
        while position < len(text):
            turn = self._turn.match(text, position)
            if not turn:
                return None
            messages.append({"role": self._roles.get(turn["role"], turn["role"]), "content": turn["content"]})
            position = turn.end()
        return messages


class InstMarkup(Markup):
    """Mistral and Llama 2: `[INST] user [/INST] assistant</s>` exchanges."""

    _system = re.compile(r"\[SYSTEM_PROMPT\](?P<content>.*?)\[/SYSTEM_PROMPT\]", re.DOTALL)
    _exchange = re.compile(r"(?:<s>)?\s*\[INST\](?P<user>.*?)\[/INST\](?P<assistant>.*?)(?:</s>\s*|\Z)", re.DOTALL)
    _llama2_system = re.compile(r"\s*<<SYS>>\n(?P<system>.*?)\n<</SYS>>\n\n(?P<user>.*)", re.DOTALL)

    def turns(self, text: str) -> list[dict[str, str]] | None:
        messages, position = [], 0
        if system := self._system.match(text):
            messages.append({"role": "system", "content": self.tidy(system["content"])})
            position = system.end()
        while position < len(text):
            exchange = self._exchange.match(text, position)
            if not exchange:
                return None
            user = exchange["user"]
            if not messages and (llama2 := self._llama2_system.match(user)):
                messages.append({"role": "system", "content": self.tidy(llama2["system"])})
                user = llama2["user"]
            messages += [{"role": "user", "content": self.tidy(user)},
                         {"role": "assistant", "content": self.tidy(exchange["assistant"])}]
            position = exchange.end()
        return messages

    def tidy(self, content: str) -> str:
        return content.strip()


MARKUPS = (
    HeaderMarkup("chatml", "", "<|im_start|>", r"\w+", "\n", "<|im_end|>"),
    HeaderMarkup("llama3", "<|begin_of_text|>", "<|start_header_id|>", r"\w+", "<|end_header_id|>\n\n", "<|eot_id|>"),
    InstMarkup("mistral", "<s>", "</s>"),
    HeaderMarkup("gemma", "<bos>", "<start_of_turn>", r"\w+", "\n", "<end_of_turn>", roles={"model": "assistant"}),
    HeaderMarkup("phi3", "<s>", "<|", "system|user|assistant", "|>\n", "<|end|>"),
)


def recover_conversation(text: str, prompt: str | None = None) -> Recovered | None:
    """The markup and the messages of a rendered conversation ending in the assistant's turn, or
    None when no known markup covers the text (or more than one does)."""
    found = [Recovered(markup.name, messages) for markup in MARKUPS if (messages := markup.recover(text, prompt))]
    return found[0] if len(found) == 1 else None

