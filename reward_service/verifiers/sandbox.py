"""Run untrusted Python code, one short-lived sandbox per run.

Each run goes through a small launcher process (this very file, run as
`python -I -S sandbox.py`), which isolates itself and then forks the program:

- own namespaces: network (no interfaces up: no network at all), mount and PID.
  The program is PID 1 of its PID namespace, so when it ends, or when the
  launcher is killed at the wall-clock timeout (the program has PR_SET_PDEATHSIG),
  the kernel kills everything it started, double-forked daemons included;
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
  RLIMIT_NPROC count that run's processes only; after every run the service
  kills whatever that uid still runs and waits until none is left. When not
  root, the program runs as the service user inside a user namespace.

The program runs as `python -I -S main.py`: isolated mode, and no site-packages
(solutions get the standard library only: faster start, nothing of the
service's environment importable). stdout and stderr are read continuously and
kept up to `output_bytes` each; the rest is discarded, so a program printing
gigabytes neither fills memory nor blocks.

A bounded number of runs go at once (`max_concurrent`); up to `max_queued` more
wait; beyond that `run` raises `SandboxBusy` at once.

If the namespaces cannot be made, `Sandbox.start` refuses with the reason,
unless `allow_network=True` and no `hidden_paths`: then runs go without
namespaces, in a host temporary directory, and `describe()` says what that
gives up.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, AT_RECURSIVE, AT_FDCWD, SYS_MOUNT_SETATTR = 1, 0x8000, -100, 442
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SANDBOX_HOME = "/tmp/sandbox"
LAUNCHER_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


# --- The launcher: a separate process per run, started as `python -I -S sandbox.py`.
# It reads a JSON spec on stdin and reports JSON lines on the file descriptor the
# spec names: {"error": why} if it could not start the program, else
# {"exit_code", "signal", "cpu_s"} once the program ended.


def _launch() -> None:
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
    _, status, usage = os.wait4(pid, 0)
    _report(report, exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            cpu_s=usage.ru_utime + usage.ru_stime)


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
        os.makedirs(python_root, mode=0o755)
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

import asyncio  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot give the isolation it was asked for; the message says why."""


class SandboxBusy(RuntimeError):
    """All sandboxes are running and the waiting queue is full: try again later."""


class SandboxError(RuntimeError):
    """A run could not be carried out (the sandbox failed, not the program)."""


@dataclass(frozen=True)
class SandboxSettings:
    max_concurrent: int = 8
    max_queued: int = 64
    timeout_s: float = 10.0  # wall clock per run, interpreter start included
    cpu_time_s: int = 10
    memory_bytes: int = 512 * 2**20  # address space
    file_size_bytes: int = 16 * 2**20
    open_files: int = 64
    processes: int = 32  # per run (per uid when root)
    output_bytes: int = 64 * 2**10  # kept per stream
    scratch_bytes: int = 64 * 2**20  # the private /tmp (and /var/tmp, /dev/shm)
    base_uid: int = 62000  # slots run as base_uid .. base_uid + max_concurrent - 1 (when root)
    hidden_paths: tuple[str, ...] = ()
    allow_network: bool = False
    python: str = sys.executable


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when the program did not exit by itself
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None  # why it was killed, e.g. "wall-clock timeout (2 s)", "cpu time limit (1 s)"
    duration_s: float
    cpu_s: float | None  # None when it was killed at the timeout
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class _Mode:
    isolate: bool
    reason: str = ""  # why not isolated


class Sandbox:
    """A pool of sandboxes. `await start()` once, then `await run(code)` from any task."""

    def __init__(self, settings: SandboxSettings = SandboxSettings()):
        self.settings = settings
        self._root = os.geteuid() == 0
        self._mode: _Mode | None = None
        self._free_slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(settings.max_concurrent):
            self._free_slots.put_nowait(slot)
        self._waiting = 0

    async def start(self) -> None:
        """Check that sandboxes can be made, by running one; raise SandboxUnavailable if not."""
        if self._root:
            self._check_uids_unused()
        self._mode = _Mode(isolate=True)
        failure = await self._probe()
        if failure and self.settings.allow_network and not self.settings.hidden_paths:
            self._mode = _Mode(isolate=False, reason=failure)
            failure = await self._probe()
        if failure:
            self._mode = None
            advice = ("" if self.settings.allow_network or self._mode else
                      "; allow_network=True (and no hidden_paths) runs without namespaces")
            raise SandboxUnavailable(f"cannot start the sandbox: {failure}{advice}")

    async def run(self, code: str, timeout_s: float | None = None) -> RunResult:
        """Run `code` as a Python program in a fresh sandbox; wait for a free one if needed."""
        if self._mode is None:
            raise SandboxError("Sandbox.start() was not called (or failed)")
        slot = await self._acquire_slot()
        try:
            return await self._run_in_slot(slot, code, timeout_s or self.settings.timeout_s)
        finally:
            self._free_slots.put_nowait(slot)

    def describe(self) -> dict:
        s = self.settings
        isolated = self._mode is not None and self._mode.isolate
        return {
            "started": self._mode is not None,
            "user": (f"uids {s.base_uid}..{s.base_uid + s.max_concurrent - 1} (one per slot, no groups)"
                     if self._root else f"the service user ({pwd.getpwuid(os.getuid()).pw_name}): not root"),
            "network": "none (own network namespace)" if isolated else "host network (allow_network=True)",
            "filesystem": ("read-only; private tmpfs /tmp, /var/tmp, /dev/shm; /run and the service home hidden"
                           if isolated else "host filesystem; a host temporary directory per run"),
            "hidden_paths": list(s.hidden_paths) if isolated else "none (no mount namespace)",
            "leftover_processes": ("killed with the PID namespace" if isolated else
                                   "killed by uid after the run" if self._root else
                                   "only the process group is killed: processes that leave it survive"),
            "not_isolated_because": None if isolated or self._mode is None else self._mode.reason,
            "python": self._program_argv(),
            "limits": {"wall_s": s.timeout_s, **self._rlimits(), "output_bytes": s.output_bytes,
                       "scratch_bytes": s.scratch_bytes},
            "max_concurrent": s.max_concurrent,
            "max_queued": s.max_queued,
        }

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
        workdir = None if self._mode.isolate else tempfile.mkdtemp(prefix="reward-sandbox-")
        if workdir and uid is not None:
            os.chown(workdir, uid, uid)
        status_read, status_write = os.pipe()
        started = time.monotonic()
        process = None
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", os.path.abspath(__file__),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                pass_fds=(status_write,), start_new_session=True, env={}, cwd="/")
            os.close(status_write)
            status_write = None
            process.stdin.write(json.dumps(self._spec(code, uid, workdir, status_fd=status_write_fd(process)))
                                .encode()) if False else None
            return await self._supervise(process, code, uid, workdir, status_read, timeout_s, started)
        finally:
            if status_write is not None:
                os.close(status_write)
            os.close(status_read)
            if process is not None and process.returncode is None:
                _kill_group(process.pid)
                await process.wait()
            if uid is not None:
                await _kill_processes_of(uid)
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
