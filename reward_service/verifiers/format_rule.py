"""Reward 1.0 when a response has the required form, else 0.0.

Two kinds of rule, each built once (from config or a reference) and then
checked against any number of responses:

- `RegexRule`: the whole response must match the pattern (`re.fullmatch`), or
  the pattern must occur somewhere in it (`mode="search"`). Patterns are
  compiled with re.DOTALL unless other flags are given. Python's `re` has no
  time limit: a pattern prone to catastrophic backtracking is the rule
  author's to avoid, since responses are untrusted.
- `JsonSchemaRule`: the response, stripped of surrounding whitespace, must be
  one JSON document valid against the schema (`jsonschema`, the draft the
  schema declares, else the latest). A malformed schema is refused when the
  rule is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

import jsonschema


@dataclass(frozen=True)
class FormatVerdict:
    passed: bool
    reward: float
    detail: str = ""  # why it failed


class RegexRule:
    def __init__(self, pattern: str, *, mode: Literal["fullmatch", "search"] = "fullmatch", flags: int = re.DOTALL):
        if mode not in ("fullmatch", "search"):
            raise ValueError(f"mode must be 'fullmatch' or 'search', not {mode!r}")
        self.pattern = re.compile(pattern, flags)  # raises re.error for a malformed pattern
        self.mode = mode

    def check(self, response: str) -> FormatVerdict:
        matched = getattr(self.pattern, self.mode)(response) is not None
        return _verdict(matched, f"the response does not {self.mode.replace('fullmatch', 'fully match')} "
                                 f"{self.pattern.pattern!r}")


class JsonSchemaRule:
    def __init__(self, schema: dict | bool):
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)  # raises jsonschema.SchemaError
        self.validator = validator_class(schema)

    def check(self, response: str) -> FormatVerdict:
        try:
            document = json.loads(response)
        except json.JSONDecodeError as error:
            return _verdict(False, f"not JSON: {error}")
        problem = jsonschema.exceptions.best_match(self.validator.iter_errors(document))
        return _verdict(problem is None, "" if problem is None else f"{problem.json_path}: {problem.message}")


def _verdict(passed: bool, why_not: str) -> FormatVerdict:
    return FormatVerdict(True, 1.0) if passed else FormatVerdict(False, 0.0, why_not[:500])
