"""Preference data: the file formats `train-rm` reads, all turned into (prompt, chosen, rejected).

One JSON object per line, in any of these shapes (detected per line, or forced):

- `pairs`:     {"prompt": "...", "chosen": "...", "rejected": "..."}
- `hh`:        {"chosen": "...", "rejected": "..."}, the prompt inside both texts
               (HH-RLHF style); the shared beginning up to the last "Assistant:" turn
               (or the last word boundary) is taken as the prompt
- `ranklist`:  {"prompt": "...", "ranking": ["best", "next", ..., "worst"]} (prompt
               optional; `responses` is accepted for `ranking`), or a bare JSON list of
               responses, best first; a list of n expands to all n(n-1)/2 ordered pairs

The human queue's export (`reward-service human export`) writes `pairs` lines
with extra fields, which are ignored here, so it trains directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

FORMATS = ("auto", "pairs", "hh", "ranklist")
HH_ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


class PreferenceFormatError(ValueError):
    """Lines that cannot be read; every bad line is named, none is silently dropped."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {path}:{line}: {problem}" for line, problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} unreadable line(s) in {path} (fix them, or pass --skip-bad-lines to train on the rest):\n"
            f"{shown}{more}"
        )


def split_hh(chosen: str, rejected: str) -> PreferencePair:
    """Split HH-RLHF style texts into the shared prompt and the two responses."""
    shared = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        shared += 1
    prefix = chosen[:shared]
    cut = prefix.rfind(HH_ASSISTANT)
    if cut >= 0:
        cut += len(HH_ASSISTANT)
    else:
        cut = max(prefix.rfind(" "), prefix.rfind("\n")) + 1 if shared < min(len(chosen), len(rejected)) else 0
    return PreferencePair(chosen[:cut], chosen[cut:], rejected[cut:])


def _string(value, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"`{field}` must be a string, got {type(value).__name__}")
    return value


def _ranking(record) -> list[PreferencePair]:
    if isinstance(record, list):
        prompt, ranking = "", record
    else:
        prompt = _string(record.get("prompt", ""), "prompt")
        ranking = record.get("ranking", record.get("responses"))
    if not isinstance(ranking, list) or len(ranking) < 2:
        raise ValueError("a rank list needs `ranking` (or `responses`): a list of at least 2 responses, best first")
    texts = [_string(r, f"ranking[{i}]") for i, r in enumerate(ranking)]
    return [PreferencePair(prompt, texts[i], texts[j]) for i, j in combinations(range(len(texts)), 2)]


def parse_record(record, fmt: str = "auto") -> list[PreferencePair]:
    """The pairs one JSON line stands for."""
    if fmt == "ranklist" or isinstance(record, list) or (
        fmt == "auto" and isinstance(record, dict) and ("ranking" in record or "responses" in record)
    ):
        return _ranking(record)
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object or list, got {type(record).__name__}")
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (formats: pairs, hh, ranklist)")
    chosen, rejected = _string(record["chosen"], "chosen"), _string(record["rejected"], "rejected")
    if fmt == "hh" or (fmt == "auto" and "prompt" not in record):
        return [split_hh(chosen, rejected)]
    if "prompt" not in record:
        raise ValueError("format `pairs` needs a `prompt`")
    return [PreferencePair(_string(record["prompt"], "prompt"), chosen, rejected)]


def read_preferences(path: str | Path, fmt: str = "auto", skip_bad_lines: bool = False) -> tuple[list[PreferencePair], list[tuple[int, str]]]:
    """Read a JSONL file. Returns (pairs, skipped problems). Raises PreferenceFormatError naming
    every bad line unless `skip_bad_lines`, in which case they are returned for reporting."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    pairs: list[PreferencePair] = []
    problems: list[tuple[int, str]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pairs.extend(parse_record(json.loads(line), fmt))
            except json.JSONDecodeError as exc:
                problems.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            except ValueError as exc:
                problems.append((number, str(exc)))
    if problems and not skip_bad_lines:
        raise PreferenceFormatError(str(path), problems)
    if not pairs:
        raise PreferenceFormatError(str(path), problems or [(0, "no preference pairs in the file")])
    return pairs, problems
