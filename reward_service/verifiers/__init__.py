"""Verifiable rewards: plain library code, no HTTP and no service config.

- `math_answer`: final-answer equivalence with math-verify, in killable worker processes.
- `sandbox`: run untrusted Python, isolated and limited, killed at a timeout.
- `code_tests`: reward code by the share of reference tests it passes, in the sandbox.
- `format_rule`: a regex or JSON-schema rule on the response.
"""

from .code_tests import CodeTestVerifier, CodeVerdict, extract_code
from .format_rule import FormatVerdict, JsonSchemaRule, RegexRule
from .math_answer import MathVerdict, MathVerifier, compare_final_answers
from .sandbox import (
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxError,
    SandboxSettings,
    SandboxUnavailable,
)

__all__ = [
    "CodeTestVerifier",
    "CodeVerdict",
    "FormatVerdict",
    "JsonSchemaRule",
    "MathVerdict",
    "MathVerifier",
    "RegexRule",
    "RunResult",
    "Sandbox",
    "SandboxBusy",
    "SandboxError",
    "SandboxSettings",
    "SandboxUnavailable",
    "compare_final_answers",
    "extract_code",
]
