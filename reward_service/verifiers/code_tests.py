"""Reward a response's code by the share of the reference's tests it passes.

The code is the last fenced block marked python, py, python3 or unmarked (a
block left open at the end of the response counts); with no fenced block at
all, the whole response, if it is valid Python. The reference is Python test
code, split into tests by its top-level statements:

- each `assert` statement is one test;
- each function named `test_*` taking no arguments is one test, called after
  the rest of the reference ran;
- every other statement (imports, helpers, assignments) is set-up, run in order;
- a reference with neither is one test that passes if it runs without an
  exception (e.g. HumanEval's `def check(candidate): ...` then `check(f)`).

Solution and tests run in one sandboxed program (`sandbox.Sandbox`): a harness
runs the solution (with `__name__ == "solution"`, so a `__main__` block does not
run; stdin is empty), then each test inside try/except, and writes one result line
per test, prefixed with a random per-run marker, to the original stdout; the
solution's own stdout goes to /dev/null so it cannot crowd the results out of the
capped capture. If the solution raises, the tests still run against what it
defined (a syntax error defines nothing, so every test fails). The marker stops
lookalike output, printed by accident or on purpose; code that deliberately
inspects the harness can still find it: the sandbox contains what a program
does, it does not make its score tamper-proof.

Verdicts (reward in brackets):
- passed_all: every test passed [1.0];
- some_failed: at least one failed, including a solution that does not compile
  or that raised, and a program killed by a resource limit (unreported tests
  count as failed) [passed / total, or 0.0 with all_or_nothing];
- no_code: nothing to run [0.0];
- timeout: the run reached the wall-clock timeout [0.0];
- bad_reference: the reference is not valid Python [0.0];
- sandbox_error: the sandbox could not run the program [0.0].
`SandboxBusy` is not a verdict: it propagates (the service is overloaded).
"""

from __future__ import annotations

import ast
import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from .sandbox import Sandbox, SandboxError

Outcome = Literal["passed_all", "some_failed", "no_code", "timeout", "bad_reference", "sandbox_error"]

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_FENCES = {"python", "py", "python3", ""}


@dataclass(frozen=True)
class CodeVerdict:
    outcome: Outcome
    reward: float
    passed: int
    total: int
    detail: str = ""  # why tests failed, or what went wrong
    seconds: float = 0.0  # the sandbox run's wall time (0 when nothing ran)


def extract_code(response: str) -> str | None:
    """The code a response gives, or None if it gives none."""
    blocks = [code for language, code in _FENCE.findall(response) if language.lower() in _PYTHON_FENCES]
    if blocks:
        return blocks[-1] if blocks[-1].strip() else None
    try:
        compile(response, "response", "exec")
    except (SyntaxError, ValueError):
        return None
    return response if response.strip() else None


def plan_tests(reference: str) -> list[tuple[str, bool]]:
    """The reference as (source, is_test) steps, in running order. Raises SyntaxError."""
    steps: list[tuple[str, bool]] = []
    test_functions = []
    for node in ast.parse(reference).body:
        steps.append((ast.unparse(node), isinstance(node, ast.Assert)))
        if (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                and not (node.args.args or node.args.posonlyargs or node.args.kwonlyargs)):
            test_functions.append(node.name)
    steps += [(f"{name}()", True) for name in test_functions]
    if not any(is_test for _, is_test in steps):
        return [(reference, True)]
    return steps


class CodeTestVerifier:
    """Runs responses against reference tests in a started `Sandbox`."""

    def __init__(self, sandbox: Sandbox, *, all_or_nothing: bool = False, timeout_s: float | None = None):
        self.sandbox = sandbox
        self.all_or_nothing = all_or_nothing
        self.timeout_s = timeout_s  # None: the sandbox's own

    async def verify(self, responses: list[str], references: list[str]) -> list[CodeVerdict]:
        """One verdict per (response, reference), in order. At most `max_concurrent` of a batch
        wait for the sandbox at once, so one large batch does not fill its queue alone."""
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        in_flight = asyncio.Semaphore(self.sandbox.settings.max_concurrent)

        async def verify_bounded(response: str, reference: str) -> CodeVerdict:
            async with in_flight:
                return await self.verify_one(response, reference)

        return list(await asyncio.gather(*map(verify_bounded, responses, references)))

    async def verify_one(self, response: str, reference: str) -> CodeVerdict:
        try:
            steps = plan_tests(reference)
        except SyntaxError as error:
            return CodeVerdict("bad_reference", 0.0, 0, 0, f"reference: {error}")
        total = sum(is_test for _, is_test in steps)
        code = extract_code(response)
        if code is None:
            return CodeVerdict("no_code", 0.0, 0, total, "no python code block, and the response is not Python")
        marker = secrets.token_hex(16)
        try:
            result = await self.sandbox.run(_harness(marker, code, steps), timeout_s=self.timeout_s)
        except SandboxError as error:
            return CodeVerdict("sandbox_error", 0.0, 0, total, str(error))
        if result.timed_out:
            return CodeVerdict("timeout", 0.0, 0, total, result.killed_reason, result.duration_s)
        reports = [line[len(marker) + 1:].partition(" ")[::2] for line in result.stdout.splitlines()
                   if line.startswith(marker + " ")]
        passed = len({text for kind, text in reports if kind == "pass"})
        if passed == total:
            return CodeVerdict("passed_all", 1.0, passed, total, seconds=result.duration_s)
        reasons = [text for kind, text in reports if kind in ("solution", "setup", "fail")]
        if result.stdout_truncated:
            reasons.append(f"the results overflowed the sandbox's output cap ({len(result.stdout)} bytes)")
        elif ("done", "") not in reports:
            reasons.append(f"the program ended before all tests ran: {result.killed_reason or f'exit {result.exit_code}'}"
                           f"; stderr: {result.stderr.strip()[-300:]}")
        reward = 0.0 if self.all_or_nothing else passed / total
        return CodeVerdict("some_failed", reward, passed, total, "; ".join(reasons)[:1000], result.duration_s)


def _harness(marker: str, solution: str, steps: list[tuple[str, bool]]) -> str:
    return f"MARKER = {marker!r}\nSOLUTION = {solution!r}\nSTEPS = {steps!r}\n" + _HARNESS_BODY


# Result lines: "<marker> pass <i>", "<marker> fail <i>: <error>", "<marker> solution <error>",
# "<marker> setup <error>", then "<marker> done ".
_HARNESS_BODY = r'''
import os
import sys
import types

results = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


def report(kind, text=""):
    os.write(results, f"{MARKER} {kind} {text}".replace("\n", " ").encode()[:300] + b"\n")


def error_text(error):
    return f"{type(error).__name__}: {error}"


solution = sys.modules["solution"] = types.ModuleType("solution")  # tests may `from solution import f`
namespace = solution.__dict__
try:
    exec(compile(SOLUTION, "solution.py", "exec"), namespace)
except BaseException as error:
    report("solution", "solution raised " + error_text(error))
test_index = 0
for source, is_test in STEPS:
    try:
        exec(compile(source, "tests.py", "exec"), namespace)
        if is_test:
            report("pass", test_index)
    except BaseException as error:
        report("fail" if is_test else "setup", f"{test_index}: {error_text(error)}" if is_test else error_text(error))
    test_index += is_test
report("done")
'''
