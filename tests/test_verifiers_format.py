"""Format rules: regex (full match or search) and JSON schema."""

from __future__ import annotations

import re

import jsonschema
import pytest

from reward_service.verifiers.format_rule import JsonSchemaRule, RegexRule

THINK_THEN_ANSWER = r"<think>.+</think>\s*<answer>.+</answer>"


@pytest.mark.parametrize("response, reward", [
    ("<think>2+2 is 4</think>\n<answer>4</answer>", 1.0),
    ("<think>\nmulti\nline\n</think><answer>4</answer>", 1.0),  # DOTALL by default
    ("<answer>4</answer>", 0.0),
    ("Sure! <think>x</think><answer>4</answer>", 0.0),  # fullmatch: nothing around it
])
def test_regex_fullmatch(response, reward):
    assert RegexRule(THINK_THEN_ANSWER).check(response).reward == reward


def test_regex_search_and_flags():
    rule = RegexRule(r"final answer: \d+", mode="search", flags=re.IGNORECASE)
    assert rule.check("... so the FINAL ANSWER: 42.").passed
    failed = rule.check("no number here")
    assert (failed.passed, failed.reward) == (False, 0.0) and "final answer" in failed.detail


def test_regex_rules_refuse_bad_input():
    with pytest.raises(re.error):
        RegexRule("(unclosed")
    with pytest.raises(ValueError, match="mode"):
        RegexRule("x", mode="match")


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("response, passed, why", [
    ('{"answer": 4}', True, ""),
    ('  {"answer": 4, "confidence": 0.9}\n', True, ""),
    ('{"answer": "four"}', False, "$.answer: 'four' is not of type 'integer'"),
    ('{"answer": 4, "confidence": 2}', False, "$.confidence: 2 is greater than the maximum of 1"),
    ('{"confidence": 0.5}', False, "'answer' is a required property"),
    ('{"answer": 4, "extra": 1}', False, "Additional properties are not allowed"),
    ('```json\n{"answer": 4}\n```', False, "not JSON"),
    ('The answer is {"answer": 4}', False, "not JSON"),
])
def test_json_schema(response, passed, why):
    verdict = JsonSchemaRule(SCHEMA).check(response)
    assert (verdict.passed, verdict.reward) == (passed, float(passed))
    assert why in verdict.detail


def test_a_malformed_schema_is_refused():
    with pytest.raises(jsonschema.SchemaError):
        JsonSchemaRule({"type": "no-such-type"})
