"""`math`, `code`, `format`: verifiable rewards, checked against each item's `reference`.

Each wraps one verifier of `reward_service.verifiers` (which knows nothing of
config or HTTP). Every item's outcome comes back in `Scored.verdicts` (the reply
and the metrics show why a reward is 0: wrong, no answer, timeout, ...). A
backend that needs references answers 422 naming the items without one.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import PackageNotFoundError, version

from reward_service.backends.base import DEFAULT_OPTIONS, Backend
from reward_service.config import CodeBackendSettings, FormatBackendSettings, MathBackendSettings
from reward_service.engine import chat_markup
from reward_service.errors import InvalidInput, Overloaded
from reward_service.items import Item, ScoreOptions, Scored, Verdict

log = logging.getLogger(__name__)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def response_text(item: Item) -> str:
    """What is checked: the response; of a policy's rendered text (OpenRLHF), the assistant's last
    turn without its chat markup and end tokens, when the markup is known."""
    if not item.rendered:
        return item.response
    recovered = chat_markup.recover_conversation(item.prompt + item.response, item.prompt or None)
    return recovered.messages[-1]["content"] if recovered is not None else item.response


def references_of(backend: Backend, items: list[Item]) -> list[str]:
    missing = [i for i, item in enumerate(items) if item.reference is None]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise InvalidInput(f"backend {backend.name!r} ({backend.type}) checks each response against its "
                           f"`reference`; items without one: {shown}", details={"items": missing[:100]})
    return [item.reference for item in items]


class MathBackend(Backend):
    type = "math"

    def __init__(self, name: str, settings: MathBackendSettings):
        super().__init__(name, settings)
        self.verifier = None

    @property
    def model_version(self) -> str:
        credit = f",credit={self.settings.wrong_answer_credit:g}" if self.settings.wrong_answer_credit else ""
        return f"math-verify@{_package_version('math-verify')}{credit}"

    async def load(self) -> None:
        from reward_service.verifiers import MathVerifier

        self.verifier = MathVerifier(workers=self.settings.workers, timeout_s=self.settings.timeout_s,
                                     wrong_answer_credit=self.settings.wrong_answer_credit)
        await self.verifier.start()
        self.ready = True

    async def close(self) -> None:
        if self.verifier is not None:
            await self.verifier.close()

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        verdicts = await self.verifier.verify([response_text(item) for item in items], references_of(self, items))
        return Scored([v.reward for v in verdicts], self.model_version,
                      verdicts={self.name: [Verdict(v.outcome, v.seconds) for v in verdicts]})

    def details(self) -> dict:
        return self.settings.model_dump(exclude={"type"})


class CodeBackend(Backend):
    type = "code"

    def __init__(self, name: str, settings: CodeBackendSettings, hidden_paths: tuple[str, ...] = ()):
        super().__init__(name, settings)
        self.hidden_paths = hidden_paths
        self.sandbox = None
        self.verifier = None

    @property
    def model_version(self) -> str:
        rule = "all-or-nothing" if self.settings.all_or_nothing else "fraction"
        return f"code-tests@{rule}"

    async def load(self) -> None:
        from reward_service.verifiers import CodeTestVerifier, Sandbox, SandboxSettings

        s = self.settings
        self.sandbox = Sandbox(SandboxSettings(
            max_concurrent=s.max_concurrent, max_queued=s.max_queued, timeout_s=s.timeout_s, cpu_time_s=s.cpu_time_s,
            memory_bytes=s.memory_mb * 2**20, processes=s.processes, output_bytes=s.output_kb * 2**10,
            base_uid=s.base_uid, hidden_paths=self.hidden_paths, allow_network=s.allow_network,
        ))
        await self.sandbox.start()  # SandboxUnavailable says why (shown in /readyz and /v1/backends)
        given_up = self.sandbox.describe()["not_isolated"]
        if given_up:  # allow_network: true, where no namespace could be made: said, never silent
            log.warning("backend %r runs generated code WITHOUT isolation (allow_network: true, and the sandbox's "
                        "namespaces cannot be made here: %s). Not isolated: %s", self.name,
                        self.sandbox.describe()["not_isolated_because"], " | ".join(given_up))
        self.verifier = CodeTestVerifier(self.sandbox, all_or_nothing=s.all_or_nothing)
        self.ready = True

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        from reward_service.verifiers import SandboxBusy

        references = references_of(self, items)
        try:
            verdicts = await self.verifier.verify([response_text(item) for item in items], references)
        except SandboxBusy as exc:
            raise Overloaded(f"backend {self.name!r}: {exc}", retry_after_s=1) from None
        return Scored([v.reward for v in verdicts], self.model_version,
                      verdicts={self.name: [Verdict(v.outcome, v.seconds or None) for v in verdicts]})

    def queued_items(self) -> int:
        return self.sandbox.waiting if self.sandbox is not None else 0

    def queue_capacity(self) -> int | None:
        return self.settings.max_queued

    def details(self) -> dict:
        return {**self.settings.model_dump(exclude={"type"}),
                "sandbox": self.sandbox.describe() if self.sandbox is not None else None}


class FormatBackend(Backend):
    type = "format"

    def __init__(self, name: str, settings: FormatBackendSettings):
        super().__init__(name, settings)
        from reward_service.verifiers import JsonSchemaRule, RegexRule

        self.rule = RegexRule(settings.regex, mode=settings.match) if settings.regex is not None \
            else JsonSchemaRule(settings.json_schema)

    @property
    def model_version(self) -> str:
        import hashlib
        import json

        rule = json.dumps([self.settings.regex, self.settings.match, self.settings.json_schema], sort_keys=True)
        return f"format@{hashlib.sha256(rule.encode()).hexdigest()[:8]}"

    async def load(self) -> None:
        self.ready = True

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        verdicts = await asyncio.to_thread(lambda: [self.rule.check(response_text(item)) for item in items])
        return Scored([v.reward for v in verdicts], self.model_version,
                      verdicts={self.name: [Verdict("passed" if v.passed else "failed", None) for v in verdicts]})

    def details(self) -> dict:
        return self.settings.model_dump(exclude={"type"})
