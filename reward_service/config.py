"""Typed settings: a YAML file, then environment overrides, validated at start-up.

Swapping the reward is a config edit: every backend is a named entry under
`backends`, `default_backend` picks the one used when a request names none.

Environment overrides use the prefix `REWARD_SERVICE__` and `__` between keys,
values parsed as YAML, e.g.::

    REWARD_SERVICE__DEFAULT_BACKEND=lexicon
    REWARD_SERVICE__BACKENDS__SENTIMENT__RUNTIME=torch
"""

from __future__ import annotations

import ipaddress
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

ENV_PREFIX = "REWARD_SERVICE__"
CONFIG_ENV = "REWARD_SERVICE_CONFIG"
MIN_KEY_LENGTH = 16  # API keys, admin keys and rater tokens alike: each is a bearer secret


def checked_secret(secret: object, what: str) -> str:
    """A key or token as it will be compared: surrounding whitespace (a trailing newline from
    `$(cat file)`, a stray space) stripped, as the key file does; inner whitespace or fewer than
    MIN_KEY_LENGTH characters is an error naming `what`, never the secret."""
    text = str(secret).strip()
    if len(text) < MIN_KEY_LENGTH or any(c.isspace() for c in text):
        raise ValueError(f"{what}: must be one word of at least {MIN_KEY_LENGTH} characters "
                         "(e.g. `openssl rand -hex 24`)")
    return text


class ConfigError(Exception):
    """A config file or override that cannot be used; the message says where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchingSettings(Strict):
    """Dynamic batching knobs for one model-based backend."""

    max_batch_size: int = Field(64, ge=1, description="most items in one forward pass")
    max_batch_tokens: int | None = Field(
        None, ge=1, description="most padded tokens (rows x longest) in one forward pass; default: the runtime's "
        "(512 on CPU with ONNX, where small batches stay in cache; 16384 with torch)")
    workers: int | None = Field(
        None, ge=1, le=64, description="batches run at once, each in its own thread; default: the runtime's (one per "
        "CPU core with ONNX, each session thread-per-batch; 1 with torch)")
    max_wait_ms: float | None = Field(
        None, ge=0, description="how long a first item waits for company when no batch is running; default: the "
        "runtime's (0 on CPU with ONNX, where a free core is better used at once; 2 with torch)")
    max_queue_items: int = Field(8192, ge=1, description="items waiting beyond this are refused with 429")


class ModelBackendSettings(Strict):
    model: str = Field(description="builtin model name or a Hugging Face folder path")
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="auto: torch on a GPU, ONNX on CPU; custom-code models always run in torch")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when torch sees a GPU, else CPU")
    precision: Literal["auto", "fp32", "int8", "fp16", "bf16"] = Field(
        "auto",
        description="auto: bf16 on CUDA, int8 on CPU if it passes the fidelity check; int8 is CPU-only (ONNX), "
        "fp16 and bf16 CUDA-only (torch)",
    )
    int8_min_pearson: float = Field(
        0.99, ge=0, le=1, description="int8 is used only if its logits correlate with fp32 at least this well"
    )
    int8_max_batch_dependence: float | None = Field(
        None, ge=0, description="int8 is refused if an item's outputs move more than this between being scored "
        "alone and among the sample inputs (dynamic int8 shares one activation scale per batch); default: not checked")
    max_length: int | None = Field(
        None, ge=8, le=1_048_576,
        description="cap on tokens per item after formatting; default: the model's own limit (position "
        "embeddings, the tokenizer's model_max_length)",
    )
    truncation: Literal["reject", "left"] = Field(
        "reject", description="an item over the limit: reject (422 naming it), or left: cut the earliest turns "
        "and the start of the prompt, keep the end of the response, flag it `truncated` (requests may override)",
    )
    formatting: Literal["auto", "chat_template", "pair", "concat"] = Field(
        "auto", description="how an item becomes tokens: auto = the tokenizer's chat template if it has one, "
        "else (prompt, response) as a text pair for encoders with a separator token, else concatenation",
    )
    chat_template: str | None = Field(None, description="a Jinja chat template to use instead of the tokenizer's")
    use_prompt: bool = Field(
        False, description="score the prompt too (formatted as above); false: the response alone, as plain text")
    trust_remote_code: bool = Field(
        False, description="load a model folder's own Python code (ArmoRM, InternLM2 RMs): only for code you trust")
    output: str = Field("logits", description="the model output attribute holding the rewards (e.g. `score`)")
    batching: BatchingSettings = BatchingSettings()
    threads: int = Field(0, ge=0, description="intra-op threads for inference; 0 = all cores")
    onnx_graph: Literal["auto", "fused", "reference"] = Field(
        "auto", description="ONNX graph: auto/fused = onnxruntime's fused transformer graph (attention, LayerNorm, "
        "GELU) where it knows the architecture and it matches the reference graph on sample inputs, else the "
        "reference (dynamo) export; fused says so in a note when it cannot; reference = never fuse")

    @model_validator(mode="after")
    def _formatting_needs_the_prompt(self) -> "ModelBackendSettings":
        if not self.use_prompt and (self.formatting != "auto" or self.chat_template is not None):
            raise ValueError("`formatting` and `chat_template` apply with use_prompt: true (without the prompt "
                             "the response alone is scored as plain text)")
        return self


class SentimentBackendSettings(ModelBackendSettings):
    type: Literal["sentiment"]
    positive_label: int | str | None = Field(
        None, description="label index or name whose probability is the reward; default: from the model card"
    )


class LearnedRMBackendSettings(ModelBackendSettings):
    type: Literal["learned-rm"]
    use_prompt: bool = Field(True, description="reward models score the prompt and the response together")
    normalize: bool = Field(
        False, description="subtract the mean and divide by the std stored in the model card at training time"
    )
    objectives: list[str] | None = Field(
        None, min_length=1, description="names of the output columns of a multi-objective head, in order")
    reward: str | dict[str, float] | None = Field(
        None, description="with objectives: the objective that is the reward, or weights of several "
        "(name -> weight); default: the only column of a one-output head")

    @model_validator(mode="after")
    def _reward_among_objectives(self) -> "LearnedRMBackendSettings":
        named = {self.reward} if isinstance(self.reward, str) else set(self.reward or {})
        if isinstance(self.reward, dict) and not any(self.reward.values()):
            raise ValueError("`reward` weights are all zero (or none): the reward would always be 0")
        if named and self.objectives is None:
            raise ValueError("`reward` names objectives: list the model's outputs in `objectives`")
        unknown = sorted(named - set(self.objectives or []))
        if unknown:
            raise ValueError(f"`reward` names {', '.join(unknown)}, not among objectives {self.objectives}")
        return self


class MathBackendSettings(Strict):
    """Final-answer equivalence against each item's `reference` (math-verify)."""

    type: Literal["math"]
    workers: int = Field(2, ge=1, le=64, description="worker processes comparing answers")
    timeout_s: float = Field(5.0, gt=0, description="per item; a comparison still running is killed and scores 0")
    wrong_answer_credit: float = Field(
        0.0, ge=0, lt=1, description="reward for a well-formed but wrong answer (0: strict 1/0)")


class CodeBackendSettings(Strict):
    """The response's code run against each item's `reference` tests, in a sandbox."""

    type: Literal["code"]
    all_or_nothing: bool = Field(False, description="1 only when every test passes; default: the share passed")
    max_concurrent: int = Field(8, ge=1, le=256, description="sandboxes running at once")
    max_queued: int = Field(64, ge=0, description="runs waiting for a sandbox; beyond: 429")
    timeout_s: float = Field(10.0, gt=0, description="wall clock per item, interpreter start included")
    cpu_time_s: int = Field(10, ge=1)
    memory_mb: int = Field(512, ge=32, description="address space per run")
    processes: int = Field(32, ge=1, description="processes per run")
    output_kb: int = Field(64, ge=1, description="stdout and stderr kept per run (the rest is discarded)")
    base_uid: int = Field(62000, ge=1000, description="as root, slots run as base_uid + slot (unprivileged)")
    allow_network: bool = Field(
        False, description="true: where the sandbox's namespaces cannot be made, run the code anyway without any: "
        "it may reach the network, and nothing is hidden (the config, key files and model cache are readable as "
        "far as file permissions let the code's user read them); the log and /v1/backends say so")


class FormatBackendSettings(Strict):
    """A rule on the response: 1 when it holds, else 0."""

    type: Literal["format"]
    regex: str | None = Field(None, description="a regular expression the response must match")
    match: Literal["fullmatch", "search"] = Field("fullmatch", description="the whole response, or anywhere in it")
    json_schema: dict | None = Field(None, description="the response must be JSON valid against this schema")

    @model_validator(mode="after")
    def _one_rule(self) -> "FormatBackendSettings":
        if (self.regex is None) == (self.json_schema is None):
            raise ValueError("give exactly one of `regex` and `json_schema`")
        return self


class LexiconBackendSettings(Strict):
    type: Literal["lexicon"]
    use_prompt: bool = False


class EnsembleMember(Strict):
    backend: str = Field(description="name of another (non-ensemble) backend")
    weight: float
    normalize: bool = Field(
        False, description="standardise this member first: with mean/std below, or the member's stored ones"
    )
    mean: float | None = None
    std: float | None = Field(None, gt=0)


class EnsembleBackendSettings(Strict):
    type: Literal["ensemble"]
    members: list[EnsembleMember] = Field(min_length=1)
    return_members: bool = Field(False, description="include each member's scores in responses by default")


class RatingScale(Strict):
    """The scale raters score on; a ranking of n responses is mapped onto it linearly
    (best = max, worst = min)."""

    min: float = 1.0
    max: float = 5.0
    step: float = Field(1.0, gt=0, description="allowed ratings are min, min + step, ..., max")
    labels: dict[str, str] | None = Field(
        None,
        description="words shown on some values, e.g. {\"1\": bad, \"5\": great}; default: bad/okay/great on "
        "the 1..5 scale, worst/best on the ends of any other",
    )

    @model_validator(mode="after")
    def _ordered(self) -> "RatingScale":
        if self.max <= self.min:
            raise ValueError(f"scale.max ({self.max:g}) must be above scale.min ({self.min:g})")
        steps = (self.max - self.min) / self.step
        if abs(steps - round(steps)) > 1e-9 or round(steps) > 100:
            raise ValueError("scale: (max - min) must be a whole number of steps, at most 100")
        for key in self.labels or {}:
            try:
                on_scale = any(abs(float(key) - v) < 1e-9 for v in self.values())
            except ValueError:
                on_scale = False
            if not on_scale:
                raise ValueError(f"scale.labels: {key!r} is not a value of the scale "
                                 f"({', '.join(f'{v:g}' for v in self.values())})")
        return self

    def value_labels(self) -> dict[str, str]:
        """Labels keyed by each value as the page prints it (`1`, `0.25`)."""
        if self.labels is not None:
            return {f"{float(k):g}": v for k, v in self.labels.items()}
        if self.values() == [1, 2, 3, 4, 5]:
            return {"1": "bad", "3": "okay", "5": "great"}
        return {f"{self.min:g}": "worst", f"{self.max:g}": "best"}

    def values(self) -> list[float]:
        n = round((self.max - self.min) / self.step)
        return [round(self.min + i * self.step, 9) for i in range(n + 1)]


class HumanBackendSettings(Strict):
    type: Literal["human"]
    store: str = Field(
        "sqlite",
        description="`sqlite` (a file in the model cache), `sqlite:///abs/path.db`, or a PostgreSQL URL "
        "`postgresql://user@host/db` to share one queue between replicas",
    )
    raters: dict[str, str] = Field(
        default_factory=dict, description="rater name -> token; raters sign in to /label with their token"
    )
    overlap: int = Field(1, ge=1, le=20, description="ratings wanted per task; the reward is their mean")
    rank_groups: bool = Field(
        True, description="items of one request that share a prompt become one rank-list task"
    )
    max_rank_size: int = Field(6, ge=2, le=20, description="longer groups are split into several rank lists")
    scale: RatingScale = RatingScale()
    guidelines: str = Field(
        "Rate how good the response is as a continuation of the prompt.",
        description="shown to raters on the labeling page",
    )
    fallback: str | None = Field(
        None, description="backend scoring items still unrated at the deadline; none: 504 and keep waiting"
    )
    default_timeout_s: float = Field(3600.0, gt=0, description="deadline when a request gives no timeout_s")
    lease_s: float = Field(600.0, gt=0, description="how long a task handed to a rater is kept for them")
    poll_interval_s: float = Field(0.5, gt=0, description="how often waiting requests re-read the store")

    @field_validator("raters", mode="before")
    @classmethod
    def _tokens_checked(cls, raters: object) -> object:
        if not isinstance(raters, dict):
            return raters  # pydantic says what is wrong with it
        return {name: checked_secret(token, f"rater {name!r}'s token") for name, token in raters.items()}


BackendSettings = Annotated[
    Union[
        SentimentBackendSettings, LearnedRMBackendSettings, LexiconBackendSettings, EnsembleBackendSettings,
        HumanBackendSettings, MathBackendSettings, CodeBackendSettings, FormatBackendSettings,
    ],
    Field(discriminator="type"),
]


class ServerSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_items_per_request: int = Field(4096, ge=1)
    max_chars_per_item: int = Field(
        100_000, ge=1, description="prompt + response characters per item: a guard on work per item "
        "(VADER's cost grows with the square of it); token limits are per model backend"
    )
    long_items: Literal["reject", "truncate"] = Field(
        "reject", description="an item over max_chars_per_item: reject (422), or truncate it and flag it in the response"
    )
    max_concurrent_requests: int = Field(
        512, ge=1, description="scoring requests in flight at once (waiting human requests count); beyond: 429"
    )
    max_connections: int = Field(
        2048, ge=2, description="open connections at once (idle keep-alive ones count); a request arriving "
        "beyond it gets 503. Keep it above max_concurrent_requests, whose 429 tells clients when to retry")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a connection whose request line and headers have not all arrived this long "
        "after it opened (or after its first byte, for the next request on it) is closed")
    body_timeout_s: float = Field(
        60.0, gt=0, description="a request whose body has not all arrived this long after its headers is "
        "closed (8 MiB in 60 s needs about 1.1 Mbit/s)")
    max_header_bytes: int = Field(
        65536, ge=1024, description="request line plus headers; a longer head gets 431 and the connection closes")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or networks (10.0.0.0/8) of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed: the client address (for the failed-auth throttle "
        "and the log) is then the last one in X-Forwarded-For that is not a trusted proxy. Empty: no forwarded "
        "header is believed, from any peer, loopback included")
    default_timeout_s: float = Field(60.0, gt=0)
    max_timeout_s: float = Field(3600.0, gt=0)
    idempotency_cache_size: int = Field(1024, ge=0, description="recent request_ids remembered per backend")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, proxies: list[str]) -> list[str]:
        """Each an IP address or network: a typo (or `*`, which would let any client name its own
        address and so escape the failed-auth throttle) is an error, not a silently ignored entry."""
        checked = []
        for i, entry in enumerate(proxies):
            text = entry.strip()
            try:  # written as uvicorn compares them (it ignores a network with host bits set)
                checked.append(str(ipaddress.ip_network(text, strict=False) if "/" in text
                                   else ipaddress.ip_address(text)))
            except ValueError:
                raise ValueError(f"trusted_proxies[{i}]: {text[:60]!r} is not an IP address or network "
                                 "(e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8)") from None
        return checked


class AuthSettings(Strict):
    """Bearer keys. None configured: auth is off (allowed only on a loopback address)."""

    api_keys: list[str] = Field(default_factory=list, description="keys for /score, /get_reward, jobs, /v1/backends")
    api_keys_file: str | None = Field(None, description="one key per line; re-read when it changes (rotation)")
    admin_keys: list[str] = Field(default_factory=list, description="keys for /admin/* and the human export")
    admin_keys_file: str | None = None
    metrics_public: bool = Field(True, description="false: /metrics needs an API key too")
    allow_unauthenticated_remote: bool = Field(
        False, description="serve on a non-loopback address with no keys (not recommended)"
    )
    failed_auth_limit: int = Field(
        20, ge=1, description="failed authentications (missing or wrong API key, admin key or rater token) a "
        "client address may make in failed_auth_window_s; past it, every request of that address that needs a "
        "key or token gets 429 with Retry-After until the window has passed, right keys included")
    failed_auth_window_s: float = Field(60.0, gt=0, description="the window failed_auth_limit counts in")

    @property
    def keys_configured(self) -> bool:
        """Any key, inline or in a file: auth is on."""
        return bool(self.api_keys or self.api_keys_file or self.admin_keys or self.admin_keys_file)

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _keys_checked(cls, keys: object, info) -> object:
        if not isinstance(keys, list):
            return keys  # pydantic says what is wrong with it
        return [checked_secret(key, f"{info.field_name}[{i}]") for i, key in enumerate(keys)]


class Settings(Strict):
    default_backend: str
    backends: dict[str, BackendSettings]
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    auto_build_models: bool = Field(True, description="`serve` builds missing builtin models before starting")
    _source: str | None = PrivateAttr(None)  # the file it was read from (None: embedded or text)

    @property
    def source(self) -> str | None:
        """The config file these settings came from, if any."""
        return self._source

    @model_validator(mode="after")
    def _default_backend_exists(self) -> "Settings":
        if not self.backends:
            raise ValueError("at least one backend must be configured under `backends`")
        if self.default_backend not in self.backends:
            known = ", ".join(sorted(self.backends))
            raise ValueError(f"default_backend {self.default_backend!r} is not among the backends ({known})")
        for name, backend in self.backends.items():
            if isinstance(backend, EnsembleBackendSettings):
                for member in backend.members:
                    target = self.backends.get(member.backend)
                    if target is None:
                        raise ValueError(f"ensemble {name!r}: member {member.backend!r} is not a configured backend")
                    if isinstance(target, EnsembleBackendSettings):
                        raise ValueError(f"ensemble {name!r}: member {member.backend!r} is itself an ensemble")
            if isinstance(backend, HumanBackendSettings) and backend.fallback is not None:
                target = self.backends.get(backend.fallback)
                if target is None:
                    raise ValueError(f"human backend {name!r}: fallback {backend.fallback!r} is not a configured backend")
                if not isinstance(target, (ModelBackendSettings, LexiconBackendSettings)):
                    raise ValueError(  # verifiers need references, which rating tasks do not keep
                        f"human backend {name!r}: fallback {backend.fallback!r} must be a model or lexicon backend"
                    )
        return self

    @model_validator(mode="after")
    def _one_secret_one_role(self) -> "Settings":
        """A rater token opens the task API only: one equal to an API or admin key would let a
        rater score or administer, and one token shared by two raters makes their ratings one
        rater's. (Keys in key files are checked when the app starts.)"""
        keys = set(self.auth.api_keys) | set(self.auth.admin_keys)
        holders: dict[str, tuple[str, str]] = {}  # token -> (backend, rater), over every human backend
        for name, backend in self.backends.items():
            if not isinstance(backend, HumanBackendSettings):
                continue
            for rater, token in backend.raters.items():
                if token in keys:
                    raise ValueError(f"human backend {name!r}: rater {rater!r}'s token is also an API or admin key")
                other_backend, other_rater = holders.setdefault(token, (name, rater))
                if other_rater != rater:  # the same person may rate in several queues with one token
                    raise ValueError(f"raters {other_backend}.{other_rater} and {name}.{rater} have the same "
                                     "token: give each rater their own")
        return self

    def rater_tokens(self) -> list[str]:
        """Every human backend's rater tokens."""
        return [token for backend in self.backends.values() if isinstance(backend, HumanBackendSettings)
                for token in backend.raters.values()]


def default_config_text() -> str:
    return resources.files("reward_service").joinpath("default_config.yaml").read_text()


def _env_overrides(environ: dict[str, str]) -> list[tuple[list[str], object]]:
    overrides = []
    for key, raw in sorted(environ.items()):
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            overrides.append((path, value))
    return overrides


def _apply(data: dict, path: list[str], value: object, source: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot set {'.'.join(path)}: {part!r} is not a mapping")
        node = child
    node[path[-1]] = value


def _format_validation(error: ValidationError, source: str, data: dict) -> str:
    lines = [f"invalid config ({source}):"]
    for item in error.errors():
        where = ".".join(str(p) for p in _config_path(item["loc"], data)) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def _config_path(loc: tuple, data: dict) -> tuple:
    """The error's place as the file spells it: pydantic puts the backend's `type` (the union's
    tag) after its name, `backends.human.human.raters`; the file says `backends.human.raters`."""
    if len(loc) >= 3 and loc[0] == "backends":
        entry = (data.get("backends") or {}).get(loc[1])
        if isinstance(entry, dict) and entry.get("type") == loc[2]:
            return loc[:2] + loc[3:]
    return loc




def parse(text: str, source: str = "<config>", environ: dict[str, str] | None = None) -> Settings:
    """Parse YAML text, apply environment overrides, validate."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # the position and the problem, never the text (it may hold a key)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    environ = os.environ if environ is None else environ
    for path, value in _env_overrides(dict(environ)):
        _apply(data, path, value, f"environment override {ENV_PREFIX}{'__'.join(path).upper()}")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source, data)) from None


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load a config file (or $REWARD_SERVICE_CONFIG, or the embedded defaults)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    if not path:
        return parse(default_config_text(), "embedded default config", environ)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    settings = parse(text, str(path), environ)
    settings._source = str(path.resolve())
    return settings
