"""Run untrusted Python code, one short-lived sandbox per run.

Each run goes through a small launcher process (this very file, run as
`python -I -S sandbox.py`), which isolates itself and then forks the program:

- own namespaces: network (no interfaces up: no network at all), mount and PID.
  The program is PID 1 of its PID namespace, so when it ends, or when the
  launcher kills it at the wall-clock timeout, the kernel kills everything it
  started, double-forked daemons included; the launcher reaps it, and if the
  launcher itself dies the program follows (PR_SET_PDEATHSIG);
- the whole filesystem read-only; a private, size-capped tmpfs on /tmp,
  /var/tmp and /dev/shm; the program's directory (HOME, TMPDIR, cwd) is
  /tmp/sandbox in it, so it vanishes with the run; /run (service sockets) and
  the service user's home are empty read-only tmpfs (the Python installation is
  bound back read-only where it lies inside that home); each of `hidden_paths`
  is covered too (a directory by an empty tmpfs, a file by /dev/null);
- limits on CPU time, address space, file size, open files and processes;
  no new privileges;
- when the service runs as root: its own unprivileged uid/gid per concurrent
  slot (`base_uid + slot`, no supplementary groups), which also makes
  RLIMIT_NPROC count that run's processes only; whenever the PID namespace
  cannot vouch for it (no namespaces, or a launcher that did not reap), the
  service kills whatever that uid still runs and waits until none is left.
  When not root, the program runs as the service user in a user namespace.

The program runs as `python -I -S main.py`: isolated mode, and no site-packages
(solutions get the standard library only: faster start, nothing of the
service's environment importable). stdout and stderr are read continuously and
kept up to `output_bytes` each; the rest is discarded, so a program printing
gigabytes neither fills memory nor blocks.

A bounded number of runs go at once (`max_concurrent`); up to `max_queued` more
wait; beyond that `run` raises `SandboxBusy` at once.

If the namespaces cannot be made, `Sandbox.start` refuses with the reason,
unless `allow_network=True`: then runs go without any namespace, in a host
temporary directory, with the limits and (as root) the per-slot uids only. That
gives up more than the network: nothing is hidden, so the code reads whatever
its user may read, `hidden_paths` included. `describe()["not_isolated"]` says
exactly what is given up (empty when isolated), for the service to show and log.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, AT_RECURSIVE, AT_FDCWD, SYS_MOUNT_SETATTR = 1, 0x8000, -100, 442
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SANDBOX_HOME = "/tmp/sandbox"
LAUNCHER_FAILED = 125
LAUNCHER_GRACE_S = 5.0  # beyond the run's timeout, before the service kills a stuck launcher

_libc = ctypes.CDLL(None, use_errno=True)


# --- The launcher: a separate process per run, started as `python -I -S sandbox.py`.
# It reads a JSON spec on stdin and reports JSON lines on the file descriptor the
# spec names: {"error": why} if it could not start the program, else
# {"exit_code", "signal", "cpu_s", "timed_out"} once the program ended. It kills the
# program at the timeout, or when the service sends it SIGTERM, and reaps it itself:
# a program left to init might stay a zombie, and zombies count against RLIMIT_NPROC.


class _Stop(Exception):
    """SIGTERM from the service: stop the program now."""


def _launch() -> None:
    signal.signal(signal.SIGTERM, _raise_stop)
    spec = json.loads(sys.stdin.buffer.read())
    report = spec["status_fd"]
    os.set_inheritable(report, False)  # the program must not be able to write reports
    try:
        if spec["isolate"]:
            _isolate(spec)
        workdir = _prepare_workdir(spec)
    except OSError as error:
        _report(report, error=f"sandbox set-up failed: {error}")
        sys.exit(LAUNCHER_FAILED)
    pid = os.fork()
    if pid == 0:
        try:
            _exec_program(spec, workdir)
        except BaseException as error:  # noqa: BLE001 - anything before exec is a set-up failure
            _report(report, error=f"sandbox set-up failed: {error}")
        os._exit(LAUNCHER_FAILED)
    timed_out = _wait_or_kill(pid, spec["timeout_s"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the program is dead: reap and report it in any case
    _, status, usage = os.wait4(pid, 0)
    _report(report, exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            cpu_s=usage.ru_utime + usage.ru_stime, timed_out=timed_out)


def _raise_stop(signum, frame) -> None:
    raise _Stop


def _wait_or_kill(pid: int, timeout_s: float) -> bool:
    """Wait for the program to end, until the timeout or a SIGTERM; then kill it if it runs
    still, and what is left in its process group. True if it had to be killed."""
    pidfd = os.pidfd_open(pid)
    try:
        running = not select.select([pidfd], [], [], timeout_s)[0]
    except _Stop:
        running = True
    if running:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # as PID 1 of its namespace: takes it all along
    os.close(pidfd)
    try:  # not yet reaped, so its pid (and group id) cannot have been reused
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return running


def _report(fd: int, **fields) -> None:
    os.write(fd, (json.dumps(fields) + "\n").encode())


def _isolate(spec: dict) -> None:
    """New namespaces, a read-only filesystem, private scratch space, hidden paths."""
    unprivileged = os.geteuid() != 0
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | (CLONE_NEWUSER if unprivileged else 0)),
           "unshare(network, mount, PID namespaces)")
    if unprivileged:  # map the service user to itself; we hold capabilities inside the namespace only
        for name, line in (("setgroups", "deny"), ("uid_map", f"{os.getuid()} {os.getuid()} 1"),
                           ("gid_map", f"{os.getgid()} {os.getgid()} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(line)
    _make_read_only("/", propagation=MS_PRIVATE)
    for scratch in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(scratch) and not os.path.islink(scratch):
            _mount_tmpfs(scratch, f"size={spec['scratch_bytes']},mode=1777")
    _hide_home(spec["home"], spec["python_root"])
    for path in ["/run", *spec["hidden_paths"]]:
        if os.path.isdir(path):
            _mount_tmpfs(path, "size=4k,mode=755", MS_RDONLY)
        elif os.path.lexists(path):
            _check(_libc.mount(b"/dev/null", path.encode(), None, MS_BIND, None), f"hide {path}")


def _hide_home(home: str, python_root: str) -> None:
    """Cover the service user's home, then bind the Python installation back if it lies inside."""
    if home == "/" or not os.path.isdir(home):
        return
    inside = os.path.commonpath([home, python_root]) == home
    keep = os.open(python_root, os.O_PATH) if inside else None
    _mount_tmpfs(home, "size=64k,mode=755")
    if keep is not None:
        os.makedirs(python_root, mode=0o755, exist_ok=True)
        _check(_libc.mount(f"/proc/self/fd/{keep}".encode(), python_root.encode(), None, MS_BIND | MS_REC, None),
               f"bind {python_root}")
        os.close(keep)
    _make_read_only(home)


def _mount_tmpfs(path: str, options: str, flags: int = 0) -> None:
    _check(_libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | flags, options.encode()),
           f"mount tmpfs on {path}")


def _make_read_only(path: str, propagation: int = 0) -> None:
    """mount_setattr(2): make the mount tree at `path` read-only (Linux >= 5.12)."""
    attributes = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, propagation, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, attributes,
                         ctypes.sizeof(attributes)), f"make {path} read-only")


def _prepare_workdir(spec: dict) -> str:
    workdir = SANDBOX_HOME if spec["isolate"] else spec["workdir"]
    if spec["isolate"]:
        os.mkdir(workdir, 0o700)
    with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as f:
        f.write(spec["code"])
    if spec["uid"] is not None:
        for path in (workdir, os.path.join(workdir, "main.py")):
            os.chown(path, spec["uid"], spec["gid"])
    return workdir


def _exec_program(spec: dict, workdir: str) -> None:
    """In the forked child: the last steps, then exec. Never returns."""
    if spec["isolate"]:  # a /proc that shows this PID namespace only
        _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    os.setpgid(0, 0)
    os.chdir(workdir)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for name, value in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    os.execve(spec["argv"][0], spec["argv"], {**spec["env"], "HOME": workdir, "TMPDIR": workdir})


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    _launch()
    sys.exit(0)

# --- The service side. Imported below the launcher's entry point on purpose:
# every run starts a launcher, which must not pay for importing asyncio.

import asyncio
import grp
import pwd
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot give the isolation it was asked for; the message says why."""


class SandboxBusy(RuntimeError):
    """All sandboxes are running and the waiting queue is full: try again later."""


class SandboxError(RuntimeError):
    """A run could not be carried out (the sandbox failed, not the program)."""


@dataclass(frozen=True)
class SandboxSettings:
    """Limits apply per run; `timeout_s` is the default of `Sandbox.run`."""

    max_concurrent: int = 8
    max_queued: int = 64
    timeout_s: float = 10.0  # wall clock per run, interpreter start included
    cpu_time_s: int = 10
    memory_bytes: int = 512 * 2**20  # address space
    file_size_bytes: int = 16 * 2**20
    open_files: int = 64
    processes: int = 32  # RLIMIT_NPROC: per run when root (own uid) or isolated (own user namespace)
    output_bytes: int = 64 * 2**10  # kept per stream
    scratch_bytes: int = 64 * 2**20  # the private /tmp (and /var/tmp, /dev/shm)
    base_uid: int = 62000  # slots run as base_uid .. base_uid + max_concurrent - 1 (when root)
    hidden_paths: tuple[str, ...] = ()
    allow_network: bool = False
    python: str = sys.executable


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when a signal or the timeout ended the program
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None  # why it was killed, e.g. "wall-clock timeout (2 s)", "cpu time limit (1 s)"
    duration_s: float
    cpu_s: float  # the program's CPU time (and that of children it waited for)
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Sandbox:
    """A pool of sandboxes. `await start()` once, then `await run(code)` from any task."""

    def __init__(self, settings: SandboxSettings = SandboxSettings()):
        self.settings = settings
        self._root = os.geteuid() == 0
        self._isolated: bool | None = None  # None until started
        self._why_not_isolated: str | None = None
        self._free_slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(settings.max_concurrent):
            self._free_slots.put_nowait(slot)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Runs waiting for a free sandbox."""
        return self._waiting

    async def start(self) -> None:
        """Check that sandboxes can be made, by running one; raise SandboxUnavailable if not."""
        if self._root:
            self._check_uids_unused()
        self._isolated = True
        failure = await self._probe()
        if failure and self.settings.allow_network:
            self._isolated, self._why_not_isolated = False, failure
            failure = await self._probe()
            if failure:
                failure = f"{failure} (without namespaces, as allow_network=True allows)"
        if failure:
            self._isolated = None
            hint = ("" if self.settings.allow_network else
                    "; allow_network=True runs code without namespaces: with the host's network, and able to "
                    "read what its user may read, hidden_paths included")
            raise SandboxUnavailable(f"cannot start the sandbox: {failure}{hint}")

    async def run(self, code: str, timeout_s: float | None = None) -> RunResult:
        """Run `code` as a Python program in a fresh sandbox; wait for a free one if needed."""
        if self._isolated is None:
            raise SandboxError("Sandbox.start() was not called (or failed)")
        slot = await self._acquire_slot()
        try:
            return await self._run_in_slot(slot, code, self.settings.timeout_s if timeout_s is None else timeout_s)
        finally:
            self._free_slots.put_nowait(slot)

    def describe(self) -> dict:
        s = self.settings
        isolated = self._isolated is True
        return {
            "started": self._isolated is not None,
            "user": (f"uids {s.base_uid}..{s.base_uid + s.max_concurrent - 1} (one per slot, no groups)"
                     if self._root else f"the service user ({_name_of(pwd.getpwuid, os.getuid()) or os.getuid()}), "
                     "not root" + (", in a user namespace" if isolated else "")),
            "network": "none (own network namespace)" if isolated else "host network (allow_network=True)",
            "filesystem": ("read-only; private tmpfs /tmp, /var/tmp, /dev/shm; /run and the service home hidden"
                           if isolated else "host filesystem; a host temporary directory per run"),
            "hidden_paths": list(s.hidden_paths) if isolated else [],
            "leftover_processes": ("killed with the PID namespace, which the launcher reaps" if isolated else
                                   "killed by uid after the run" if self._root else
                                   "only the process group is killed: processes that leave it survive"),
            "not_isolated_because": self._why_not_isolated,
            "not_isolated": self._given_up() if self._isolated is False else [],
            "python": self._program_argv(),
            "limits": {"wall_s": s.timeout_s, **self._rlimits(), "output_bytes": s.output_bytes,
                       "scratch_bytes": s.scratch_bytes},
            "max_concurrent": s.max_concurrent,
            "max_queued": s.max_queued,
        }

    def _given_up(self) -> list[str]:
        """What runs without namespaces give up, one sentence each (the exact paths named)."""
        s = self.settings
        if self._root:
            who = f"uids {s.base_uid}..{s.base_uid + s.max_concurrent - 1} (no groups)"
            readable = [path for path in s.hidden_paths if _world_readable(path)]
            unreadable = [path for path in s.hidden_paths if path not in readable]
            files = (f"files: nothing is hidden (no mount namespace); the code runs as {who}, so it reads what any "
                     f"user may: of the paths it should not read, readable: {readable or 'none'}; not world-readable "
                     f"(unreadable to it unless ACLs allow): {unreadable or 'none'}; and every world-readable file "
                     "of the host; it may write where any user may (the host's /tmp)")
        else:
            who = _name_of(pwd.getpwuid, os.getuid()) or str(os.getuid())
            paths = f" ({', '.join(s.hidden_paths)})" if s.hidden_paths else ""
            files = (f"files: nothing is hidden (no mount namespace); the code runs as the service user ({who}), so "
                     f"it reads everything the service can, the paths it should not read{paths}, /run and the "
                     "service user's home included, and it may write wherever that user may")
        return [
            "network: the host's network (allow_network=True): the code can connect to any address the service "
            "can reach, 127.0.0.1 included",
            files,
            "processes: " + ("what a run leaves behind is killed by uid afterwards" if self._root else
                             "only the run's process group is killed: processes that leave it survive the run"),
        ]

    # --- internals

    async def _acquire_slot(self) -> int:
        if self._free_slots.empty() and self._waiting >= self.settings.max_queued:
            raise SandboxBusy(f"{self.settings.max_concurrent} sandboxes running and "
                              f"{self._waiting} runs waiting (max_queued={self.settings.max_queued})")
        self._waiting += 1
        try:
            return await self._free_slots.get()
        finally:
            self._waiting -= 1

    async def _probe(self) -> str | None:
        """Run a trivial program; None if it worked, else why not."""
        try:
            result = await self.run("print('sandbox ok')", timeout_s=max(self.settings.timeout_s, 10.0))
        except SandboxError as error:
            return str(error)
        if result.stdout != "sandbox ok\n":
            return (f"a trivial program failed (exit {result.exit_code}, {result.killed_reason or 'not killed'}): "
                    f"{result.stderr.strip()[-500:]}")
        return None

    async def _run_in_slot(self, slot: int, code: str, timeout_s: float) -> RunResult:
        uid = self.settings.base_uid + slot if self._root else None
        workdir = None if self._isolated else self._make_host_workdir(uid)
        stdout, stdout_writer = await _open_capture(self.settings.output_bytes)
        stderr, stderr_writer = await _open_capture(self.settings.output_bytes)
        reports, report_writer = os.pipe()
        spec = self._spec(code, uid, workdir, report_writer, timeout_s)
        started = time.monotonic()
        process = None
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", os.path.abspath(__file__), stdin=asyncio.subprocess.PIPE,
                    stdout=stdout_writer, stderr=stderr_writer, pass_fds=(report_writer,),
                    start_new_session=True, env={}, cwd="/")
            finally:
                for fd in (stdout_writer, stderr_writer, report_writer):
                    os.close(fd)
            process.stdin.write(json.dumps(spec).encode())
            process.stdin.close()
            # The launcher enforces the timeout; this wait only guards against a stuck launcher.
            await _exits_within(process, timeout_s + LAUNCHER_GRACE_S)
            duration_s = time.monotonic() - started
        finally:
            await _stop_launcher(process)
            report = _read_reports(reports)
            await self._clean_up(uid, workdir, program_reaped="exit_code" in report)
            # What is still in the pipes arrives before their end. Bounded: in the unisolated,
            # non-root mode a process that left the group may hold them open.
            await asyncio.wait([stdout.ended, stderr.ended], timeout=1.0)
            stdout.close()
            stderr.close()
        if "error" in report:
            raise SandboxError(report["error"])
        if "exit_code" not in report:
            raise SandboxError(f"the sandbox launcher ended (exit {process.returncode}) or stalled without a "
                               f"report: {stderr.text()[-500:]}")
        timed_out = report["timed_out"]
        return RunResult(
            exit_code=None if timed_out else report["exit_code"],
            stdout=stdout.text(), stderr=stderr.text(),
            stdout_truncated=stdout.truncated, stderr_truncated=stderr.truncated,
            timed_out=timed_out, killed_reason=self._killed_reason(timed_out, timeout_s, report),
            duration_s=duration_s, cpu_s=report["cpu_s"])

    async def _clean_up(self, uid: int | None, workdir: str | None, program_reaped: bool) -> None:
        """Nothing of the run survives it: no process of its uid, no directory. A reaped PID 1
        of a PID namespace leaves no process behind, so then there is nothing to look for."""
        if uid is not None and not (self._isolated and program_reaped):
            await _kill_processes_of(uid)
        if workdir is not None:
            shutil.rmtree(workdir)

    def _killed_reason(self, timed_out: bool, timeout_s: float, report: dict) -> str | None:
        number = report.get("signal")
        if timed_out:
            return f"wall-clock timeout ({timeout_s:g} s)"
        if number == signal.SIGXCPU or (number == signal.SIGKILL and report["cpu_s"] >= 0.9 * self.settings.cpu_time_s):
            return f"cpu time limit ({self.settings.cpu_time_s} s)"
        if number == signal.SIGXFSZ:
            return f"file size limit ({self.settings.file_size_bytes} bytes)"
        return f"killed by {signal.Signals(number).name}" if number else None

    def _spec(self, code: str, uid: int | None, workdir: str | None, report_fd: int, timeout_s: float) -> dict:
        program = os.path.realpath(self.settings.python)
        return {
            "isolate": self._isolated, "status_fd": report_fd, "code": code, "uid": uid, "gid": uid,
            "timeout_s": timeout_s,
            "workdir": workdir, "argv": self._program_argv(), "rlimits": self._rlimits(),
            "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            "hidden_paths": [os.path.realpath(path) for path in self.settings.hidden_paths],
            "scratch_bytes": self.settings.scratch_bytes,
            "home": os.path.realpath(os.path.expanduser("~")),
            "python_root": os.path.dirname(os.path.dirname(program)),  # <root>/bin/pythonX.Y
        }

    def _program_argv(self) -> list[str]:
        return [os.path.realpath(self.settings.python), "-I", "-S", "main.py"]

    def _rlimits(self) -> dict[str, int]:
        s = self.settings
        return {"RLIMIT_CPU": s.cpu_time_s, "RLIMIT_AS": s.memory_bytes, "RLIMIT_FSIZE": s.file_size_bytes,
                "RLIMIT_NOFILE": s.open_files, "RLIMIT_NPROC": s.processes, "RLIMIT_CORE": 0}

    def _make_host_workdir(self, uid: int | None) -> str:
        workdir = tempfile.mkdtemp(prefix="reward-sandbox-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        return workdir

    def _check_uids_unused(self) -> None:
        """Every run kills all processes of its uid: those uids must belong to nobody else."""
        first = self.settings.base_uid
        for uid in range(first, first + self.settings.max_concurrent):
            owner = _name_of(pwd.getpwuid, uid) or _name_of(grp.getgrgid, uid)
            running = _processes_of(uid)
            if owner or running:
                raise SandboxUnavailable(
                    f"uid/gid {uid} is in use ({f'named {owner!r}' if owner else f'processes {running}'}); "
                    f"choose a base_uid whose {self.settings.max_concurrent} ids are unused")


class _Capture(asyncio.Protocol):
    """Keep the first `limit` bytes that come through a pipe; read and discard the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.truncated = False
        self.ended = asyncio.get_running_loop().create_future()
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.ReadTransport) -> None:
        self.transport = transport

    def data_received(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[:max(room, 0)]
        self.truncated |= len(chunk) > room

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        self.transport.close()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


async def _open_capture(limit: int) -> tuple[_Capture, int]:
    """A pipe read into a _Capture; returns the capture and the write end for the program."""
    read_end, write_end = os.pipe()
    _, capture = await asyncio.get_running_loop().connect_read_pipe(
        lambda: _Capture(limit), os.fdopen(read_end, "rb", buffering=0))
    return capture, write_end


async def _exits_within(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
        return True
    except asyncio.TimeoutError:
        return False


def _read_reports(fd: int) -> dict:
    """The launcher's reports, merged; it has exited, so nothing more will come."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    report: dict = {}
    for line in data.splitlines():
        report.update(json.loads(line))
    return report


async def _stop_launcher(process: asyncio.subprocess.Process | None) -> None:
    """If the launcher still runs (the run was cancelled, or it is stuck): ask it to kill and reap
    the program; kill it if it does not end in time."""
    if process is None or process.returncode is not None:
        return
    process.terminate()
    if not await _exits_within(process, LAUNCHER_GRACE_S):
        _kill_group(process.pid)  # the program follows (PR_SET_PDEATHSIG), then its namespace
        await process.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _kill_processes_of(uid: int) -> None:
    """SIGKILL every process of `uid` and wait until all are gone, zombies included: they
    count against RLIMIT_NPROC until their parent (or init) reaps them."""
    deadline = time.monotonic() + 5.0
    while remaining := _processes_of(uid):
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {remaining} of sandbox uid {uid} outlive SIGKILL (or are not reaped)")
        for pid in remaining:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:  # checked again through the pidfd: the pid may have been reused meanwhile
                if _uid_of(pid) == uid:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(pidfd)
        await asyncio.sleep(0.005)


def _processes_of(uid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _uid_of(int(entry)) == uid]


def _uid_of(pid: int) -> int | None:
    """The real uid of a process (zombies included), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except OSError:
        return None


def _world_readable(path: str) -> bool:
    """Whether a user in no group of the owner can read `path` by its mode bits (ACLs aside):
    every folder above it searchable by others, and it readable (a folder: and searchable)."""
    path = os.path.realpath(path)
    try:
        mode = os.stat(path).st_mode
        parents = [os.stat(parent).st_mode for parent in _parents(path)]
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need and all(parent & stat.S_IXOTH for parent in parents)


def _parents(path: str) -> list[str]:
    parents = []
    while (parent := os.path.dirname(path)) != path:
        parents.append(parent)
        path = parent
    return parents


def _name_of(lookup, number: int) -> str | None:
    try:
        return lookup(number)[0]
    except KeyError:
        return None
