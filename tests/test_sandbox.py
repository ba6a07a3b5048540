"""The sandbox under hostile programs, and code rewards on a small table.

Every hostile run must be contained (it fails, within its limits), leave nothing
behind (no process of a sandbox uid, no file on the host) and never stall the
event loop: a ticker task runs beside each one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from reward_service.verifiers.code_tests import CodeTestVerifier
from reward_service.verifiers.sandbox import (
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxSettings,
    SandboxUnavailable,
)

pytestmark = pytest.mark.timeout(60)

ROOT = os.geteuid() == 0
# Uids of this test process's own: two test runs at once (two checkouts, xdist) do not see each other's.
SETTINGS = SandboxSettings(max_concurrent=4, max_queued=4, timeout_s=1.5, cpu_time_s=3, processes=16,
                           output_bytes=4096, base_uid=63000 + os.getpid() % 1000 * 4)
SANDBOX_UIDS = range(SETTINGS.base_uid, SETTINGS.base_uid + SETTINGS.max_concurrent)
needs_root = pytest.mark.skipif(not ROOT, reason="sandbox uids (and /var/lib for test files) need root")


async def started(settings: SandboxSettings = SETTINGS) -> Sandbox:
    sandbox = Sandbox(settings)
    try:
        await sandbox.start()
    except SandboxUnavailable as error:
        if os.environ.get("CI"):  # the CI machines can make namespaces: a sandbox that fails there is a bug
            pytest.fail(f"no sandbox in CI: {error}")
        pytest.skip(f"no sandbox on this machine: {error}")
    return sandbox


def run_beside_ticker(code: str, settings: SandboxSettings = SETTINGS) -> tuple[RunResult, float]:
    """Run `code` while a ticker ticks every 10 ms; return the result and the longest gap between ticks."""
    async def scenario():
        sandbox = await started(settings)
        gaps = []

        async def tick():
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticker = asyncio.create_task(tick())
        result = await sandbox.run(code)
        ticker.cancel()
        return result, max(gaps)

    result, longest_gap = asyncio.run(scenario())
    assert longest_gap < 0.5, f"the event loop stalled for {longest_gap:.2f} s"
    assert_nothing_left()
    return result


def assert_nothing_left() -> None:
    if ROOT:
        assert not processes_of(SANDBOX_UIDS), "a sandbox process survived its run"


def processes_of(uids: range) -> list[tuple[int, int]]:
    """(pid, uid) of every process, zombies included, whose real uid is in `uids`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid = int(status.split("\nUid:")[1].split()[0])
        if uid in uids:
            found.append((int(entry), uid))
    return found


# --- hostile programs


def test_an_infinite_loop_is_killed_at_the_wall_clock_timeout():
    result = run_beside_ticker("while True:\n    pass")
    assert result.timed_out and not result.ok
    assert result.killed_reason == "wall-clock timeout (1.5 s)"
    assert result.duration_s < SETTINGS.timeout_s + 1.0


def test_a_memory_hog_fails_at_the_address_space_limit():
    hoard = "hoard = []\nwhile True:\n    hoard.append(b'x' * 10**8)"  # pages written, not only reserved
    result = run_beside_ticker(hoard, replace(SETTINGS, timeout_s=5.0))
    assert not result.ok and not result.timed_out
    assert "MemoryError" in result.stderr or result.killed_reason  # killed if even the traceback runs out


def test_a_fork_bomb_hits_the_process_limit_and_all_of_it_is_killed():
    code = textwrap.dedent("""
        import os, time
        forks = 0
        try:
            while True:
                if os.fork() == 0:
                    while True:
                        pass
                forks += 1
        except OSError as error:
            print("forks", forks, error.strerror, flush=True)
        time.sleep(60)
    """)
    result = run_beside_ticker(code)
    assert result.timed_out
    assert result.stdout.startswith("forks ") and int(result.stdout.split()[1]) < SETTINGS.processes


@needs_root
def test_a_double_forked_setsid_daemon_does_not_outlive_the_run():
    code = textwrap.dedent("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print("parent leaves")
    """)
    result = run_beside_ticker(code)  # which checks that no process of a sandbox uid is left
    assert result.ok and result.stdout == "parent leaves\n"


def test_it_cannot_write_outside_its_own_directory():
    target = Path.home() / f"sandbox-was-here-{uuid.uuid4().hex}"
    code = textwrap.dedent(f"""
        import os
        for path in [{str(target)!r}, "/etc/sandbox-was-here", {os.getcwd() + "/sandbox-was-here"!r}]:
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as error:
                print("refused", path, error.strerror)
        open(os.path.join(os.environ["HOME"], "mine"), "w").write("fine")
        print("home is", os.environ["HOME"])
    """)
    result = run_beside_ticker(code)
    assert result.ok, result.stderr
    assert "wrote" not in result.stdout and result.stdout.count("refused") == 3
    assert not target.exists() and not Path("/etc/sandbox-was-here").exists()


def test_its_files_vanish_with_it():
    token = uuid.uuid4().hex
    code = textwrap.dedent(f"""
        import os
        for folder in (os.environ["HOME"], "/tmp", "/var/tmp", "/dev/shm"):
            open(os.path.join(folder, {token!r}), "w").write("x")
        print(os.environ["HOME"])
    """)
    result = run_beside_ticker(code)
    assert result.ok, result.stderr
    home = result.stdout.strip()
    for folder in ("/tmp", "/var/tmp", "/dev/shm", home):
        assert not Path(folder, token).exists(), f"{folder}/{token} was left on the host"


@pytest.fixture
def secret_dir():
    """A world-readable key file in a world-readable folder outside /tmp (which the sandbox replaces)."""
    folder = Path(tempfile.mkdtemp(dir="/var/lib", prefix="reward-sandbox-test-"))
    folder.chmod(0o755)
    (folder / "key.pem").write_text("TOP-SECRET-KEY")
    (folder / "key.pem").chmod(0o644)
    yield folder
    shutil.rmtree(folder)


@needs_root
def test_hidden_paths_cannot_be_read(secret_dir):
    key = secret_dir / "key.pem"
    code = textwrap.dedent(f"""
        import os
        try:
            print("read", open({str(key)!r}).read())
        except OSError as error:
            print("refused", error.strerror)
        print("listing", os.listdir({str(secret_dir)!r}))
    """)
    readable = run_beside_ticker(code)
    assert "read TOP-SECRET-KEY" in readable.stdout, "control: without hidden_paths the key is readable"
    for hidden in (key, secret_dir):
        result = run_beside_ticker(code, replace(SETTINGS, hidden_paths=(str(hidden),)))
        assert "TOP-SECRET-KEY" not in result.stdout, f"hiding {hidden} failed"
    assert "listing []" in result.stdout


def test_it_has_no_network():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        code = textwrap.dedent(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"leak")
                print("connected")
            except OSError as error:
                print("refused", error.strerror)
        """)
        result = run_beside_ticker(code)
        assert result.stdout.startswith("refused"), result.stdout
        with pytest.raises(socket.timeout):
            listener.accept()


def test_a_gigabyte_of_output_is_drained_and_capped():
    code = textwrap.dedent("""
        import sys
        chunk = b"x" * 2**20
        for _ in range(1024):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        print("wrote 1 GiB", file=sys.stderr)
    """)
    result = run_beside_ticker(code, replace(SETTINGS, timeout_s=8.0))
    assert result.ok and result.stderr == "wrote 1 GiB\n", (result.killed_reason, result.stderr)
    assert result.stdout == "x" * SETTINGS.output_bytes and result.stdout_truncated


def test_a_full_queue_refuses_at_once():
    async def scenario():
        sandbox = await started(replace(SETTINGS, max_concurrent=1, max_queued=1))
        runs = [asyncio.create_task(sandbox.run("import time; time.sleep(0.5)")) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(SandboxBusy):
            await sandbox.run("pass")
        return await asyncio.gather(*runs)

    assert all(result.ok for result in asyncio.run(scenario()))
    assert_nothing_left()


@pytest.mark.skipif(not (ROOT and shutil.which("setpriv") and os.path.exists("/usr/bin/python3")),
                    reason="needs root, setpriv, and /usr/bin/python3 (runnable by the sandbox uid)")
def test_without_namespaces_it_refuses_unless_the_network_is_allowed():
    """Run without CAP_SYS_ADMIN, where namespaces cannot be made."""
    script = textwrap.dedent("""
        import asyncio
        from reward_service.verifiers.sandbox import Sandbox, SandboxSettings, SandboxUnavailable
        try:
            asyncio.run(Sandbox(SandboxSettings()).start())
        except SandboxUnavailable as error:
            print("refused:", error)
        fallback = Sandbox(SandboxSettings(allow_network=True, python="/usr/bin/python3"))
        asyncio.run(fallback.start())
        print("network:", fallback.describe()["network"])
    """)
    completed = subprocess.run(["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", script],
                               capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[1], check=False)
    assert "refused: cannot start the sandbox: sandbox set-up failed: [Errno 1] unshare" in completed.stdout, \
        completed.stdout + completed.stderr
    assert "allow_network=True" in completed.stdout
    assert "network: host network (allow_network=True)" in completed.stdout


NO_NAMESPACES = pytest.mark.skipif(
    not (ROOT and shutil.which("setpriv") and os.path.exists("/usr/bin/python3")),
    reason="needs root, setpriv, and /usr/bin/python3 (runnable by the sandbox uid)")


@NO_NAMESPACES
def test_a_code_backend_without_namespaces_says_what_allow_network_gives_up(secret_dir):
    """The `code` backend where namespaces cannot be made (no CAP_SYS_ADMIN), with the hidden
    paths the service always passes: it refuses by default; with allow_network: true it runs,
    and its description (in /v1/backends) and a warning name the network and each path that is
    not hidden. The control run shows the description is true: the world-readable key is read."""
    public_key, private_key = secret_dir / "key.pem", secret_dir / "private.pem"
    private_key.write_text("PRIVATE")
    private_key.chmod(0o600)
    script = textwrap.dedent(f"""
        import asyncio, functools, json, logging, sys
        import reward_service.verifiers as verifiers
        from reward_service.backends.verifiers import CodeBackend
        from reward_service.config import CodeBackendSettings
        from reward_service.items import Item
        # the service's Python lies in root's home, which a sandbox uid cannot enter without namespaces
        verifiers.SandboxSettings = functools.partial(verifiers.SandboxSettings, python="/usr/bin/python3")
        logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="LOG %(message)s")
        hidden = ({str(public_key)!r}, {str(private_key)!r})

        async def main():
            out = {{}}
            settings = dict(type="code", base_uid={SETTINGS.base_uid}, max_concurrent=2, timeout_s=5)
            try:
                await CodeBackend("strict", CodeBackendSettings(**settings), hidden).load()
            except verifiers.SandboxUnavailable as error:
                out["refused"] = str(error)
            backend = CodeBackend("open", CodeBackendSettings(**settings, allow_network=True), hidden)
            await backend.load()
            out["ready"], out["sandbox"] = backend.ready, backend.details()["sandbox"]
            leak = "```python\\ndef leak(path):\\n    return open(path).read()\\n```"
            scored = await backend.score([Item("", leak, reference=f"assert 'TOP-SECRET' in leak({{hidden[0]!r}})"),
                                          Item("", leak, reference=f"assert 'PRIVATE' in leak({{hidden[1]!r}})")])
            out["scores"] = scored.scores
            print("RESULT", json.dumps(out))

        asyncio.run(main())
    """)
    completed = subprocess.run(["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", script],
                               capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1], check=False)
    said = completed.stdout + completed.stderr
    assert "RESULT " in completed.stdout, said
    out = json.loads(completed.stdout.split("RESULT ", 1)[1])
    assert "unshare" in out["refused"] and "allow_network=True runs code without namespaces" in out["refused"]
    assert out["ready"] is True
    sandbox = out["sandbox"]
    assert sandbox["network"] == "host network (allow_network=True)" and sandbox["hidden_paths"] == []
    assert "unshare" in sandbox["not_isolated_because"]
    network, files, _ = sandbox["not_isolated"]
    assert network.startswith("network: the host's network")
    assert f"readable: ['{public_key}']" in files and f"not world-readable (unreadable to it unless ACLs allow): " \
        f"['{private_key}']" in files, files
    assert out["scores"] == [1.0, 0.0]  # what the description says: the world-readable one is read
    warning = next(line for line in completed.stdout.splitlines() if line.startswith("LOG backend 'open'"))
    assert "WITHOUT isolation" in warning and "network: the host's network" in warning and str(public_key) in warning


# --- code rewards

ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 5) == 7\nassert add(0, 0) == 0"
CODE_CASES = [
    # (name, response, reference, outcome, passed, total)
    ("correct", "Sure:\n```python\ndef add(a, b):\n    return a + b\n```", ADD_TESTS, "passed_all", 4, 4),
    ("partly wrong", "```py\ndef add(a, b):\n    return a + b if a != 2 else 0\n```", ADD_TESTS,
     "some_failed", 3, 4),
    ("syntax error", "```python\ndef add(a, b)\n    return a + b\n```", ADD_TESTS, "some_failed", 0, 4),
    ("no code block", "You should add the two numbers together.", ADD_TESTS, "no_code", 0, 4),
    ("bare code", "def add(a, b):\n    return a + b\n", ADD_TESTS, "passed_all", 4, 4),
    ("raises", "```python\ndef add(a, b):\n    raise ValueError('no')\n```", ADD_TESTS, "some_failed", 0, 4),
    ("last block wins", "```python\ndef add(a, b):\n    return 0\n```\nFixed:\n```\ndef add(a, b):\n    return a + b\n```",
     ADD_TESTS, "passed_all", 4, 4),
    ("reads stdin", "```python\ndef add(a, b):\n    return a + b\nprint(add(int(input()), 1))\n```", ADD_TESTS,
     "passed_all", 4, 4),
    ("exits early", "```python\nimport os\ndef add(a, b):\n    return a + b\nos._exit(0)\n```", ADD_TESTS,
     "some_failed", 0, 4),
    ("forges results", "```python\nfor i in range(4):\n    print('0' * 32, 'pass', i)\n```", ADD_TESTS,
     "some_failed", 0, 4),
    ("hangs", "```python\ndef add(a, b):\n    while True:\n        pass\n```", ADD_TESTS, "timeout", 0, 4),
    ("check function", "```python\ndef add(a, b):\n    return a + b\n```",
     "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)", "passed_all", 1, 1),
    ("test functions", "```python\ndef add(a, b):\n    return a + b\n```",
     "from solution import add\n\ndef test_small():\n    assert add(1, 1) == 2\n\n"
     + "def test_wrong():\n    assert add(1, 1) == 3\n", "some_failed", 1, 2),
    ("bad reference", "```python\ndef add(a, b):\n    return a + b\n```", "assert add(1,", "bad_reference", 0, 0),
]


def test_code_rewards_follow_the_table():
    async def scenario():
        sandbox = await started(replace(SETTINGS, timeout_s=3.0))
        verifier = CodeTestVerifier(sandbox)
        verdicts = await verifier.verify([case[1] for case in CODE_CASES], [case[2] for case in CODE_CASES])
        strict = await CodeTestVerifier(sandbox, all_or_nothing=True).verify([CODE_CASES[1][1]], [ADD_TESTS])
        return verdicts, strict[0]

    verdicts, strict = asyncio.run(scenario())
    for (name, _, _, outcome, passed, total), verdict in zip(CODE_CASES, verdicts):
        assert (verdict.outcome, verdict.passed, verdict.total) == (outcome, passed, total), (name, verdict)
        assert verdict.reward == (passed / total if outcome == "some_failed" else float(outcome == "passed_all"))
    assert (strict.outcome, strict.reward) == ("some_failed", 0.0)
    assert_nothing_left()
