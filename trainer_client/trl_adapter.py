"""reward-service as a TRL reward function (GRPOTrainer, RLOOTrainer `reward_funcs`).

    from trainer_client.trl_adapter import reward_function
    trainer = GRPOTrainer(model=..., reward_funcs=[reward_function("http://127.0.0.1:8000", backend="sentiment")], ...)

TRL calls `f(prompts=[...], completions=[...], **columns) -> list[float]`, once per
generation batch: one /score call each. Prompts and completions may be plain
strings or chat messages (lists of {"role", "content"}): a conversational prompt is
sent as messages (a reward model with a chat template renders it), a completion as
its text. Dataset columns arrive as keyword arguments: `reference_column` names the
one holding each item's reference (the known answer or the tests) for verifiable
rewards (`math`, `code`). `async_reward_function` gives the same as a coroutine
function, which TRL runs concurrently with its other reward functions.
"""

from __future__ import annotations

from trainer_client.client import AsyncRewardClient, RewardClient


def as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # conversational: [{"role": ..., "content": ...}, ...]
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def as_prompt(value):
    """A conversational prompt stays messages; anything else becomes text."""
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return [{"role": m["role"], "content": as_text(m.get("content", ""))} for m in value]
    return as_text(value)


def _references(columns: dict, reference_column: str) -> list[str | None] | None:
    """The dataset column holding each item's reference, if the batch has it."""
    references = columns.get(reference_column)
    return [None if r is None else str(r) for r in references] if references is not None else None


def reward_function(url: str = "http://127.0.0.1:8000", backend: str | None = None,
                    reference_column: str = "reference", **client_options):
    client = RewardClient(url, backend=backend, **client_options)

    def reward_service(prompts, completions, **kwargs) -> list[float]:
        return client.score([as_prompt(p) for p in prompts], [as_text(c) for c in completions],
                            references=_references(kwargs, reference_column)).scores

    reward_service.__name__ = f"reward_service_{backend or 'default'}"  # TRL logs rewards under this name
    reward_service.client = client
    return reward_service


def async_reward_function(url: str = "http://127.0.0.1:8000", backend: str | None = None,
                          reference_column: str = "reference", **client_options):
    client = AsyncRewardClient(url, backend=backend, **client_options)

    async def reward_service(prompts, completions, **kwargs) -> list[float]:
        return (await client.score([as_prompt(p) for p in prompts], [as_text(c) for c in completions],
                                   references=_references(kwargs, reference_column))).scores

    reward_service.__name__ = f"reward_service_{backend or 'default'}"
    reward_service.client = client
    return reward_service
