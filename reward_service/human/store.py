"""The human queue's persistent store: jobs, tasks, hand-outs and ratings.

One class, two databases. SQLite (WAL, synchronous=FULL) is the embedded default;
PostgreSQL lets several service replicas share one queue. The SQL is the same
for both apart from placeholders and row locks: on PostgreSQL a rater's next
task is claimed with `SELECT ... FOR UPDATE SKIP LOCKED`, on SQLite every write
transaction is `BEGIN IMMEDIATE`, which serialises writers.

Every method is synchronous and short; the async callers run them in a thread.
A method returns only after its transaction committed, so whatever it reports
as saved survives a SIGKILL of the process.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reward_service.errors import BackendFailed, NotFound, TaskConflict, shown

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hq_jobs (
        id TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        request_id TEXT,
        fingerprint TEXT NOT NULL,
        n_items INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        deadline_at DOUBLE PRECISION,
        status TEXT NOT NULL,
        result TEXT,
        finished_at DOUBLE PRECISION,
        UNIQUE (backend, request_id)
    )""",
    """CREATE TABLE IF NOT EXISTS hq_tasks (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES hq_jobs (id),
        backend TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        prompt TEXT NOT NULL,
        responses TEXT NOT NULL,
        items TEXT NOT NULL,
        overlap INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        done_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS hq_tasks_queue ON hq_tasks (backend, status, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS hq_tasks_job ON hq_tasks (job_id)",
    """CREATE TABLE IF NOT EXISTS hq_assignments (
        task_id TEXT NOT NULL REFERENCES hq_tasks (id),
        rater TEXT NOT NULL,
        state TEXT NOT NULL,
        assigned_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (task_id, rater)
    )""",
    """CREATE TABLE IF NOT EXISTS hq_ratings (
        task_id TEXT NOT NULL REFERENCES hq_tasks (id),
        rater TEXT NOT NULL,
        score DOUBLE PRECISION,
        ranking TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        seconds DOUBLE PRECISION,
        counted INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (task_id, rater)
    )""",
]

CLAIM_ATTEMPTS = 8
STATEMENT_TIMEOUT_MS = 10_000
MAX_JOB_SWEEP = 100


class StoreError(BackendFailed):
    """The database could not be reached or refused the write; nothing was changed. Retryable."""

    def __init__(self, message: str):
        super().__init__(f"human queue store unavailable: {message}", retry_after_s=2)


class TaskNotFound(NotFound):
    def __init__(self, task_id: str):
        super().__init__(f"no task {shown(task_id)}")


class NotAssigned(TaskConflict):
    """The rater tries to rate a task that was never handed to them."""

    def __init__(self, task_id: str, rater: str):
        super().__init__(f"task {task_id} was not handed to rater {rater!r}; get one from /v1/tasks/next")


class AlreadyRated(TaskConflict):
    """The rater already rated this task: it cannot be rated differently or skipped."""

    def __init__(self, task_id: str, rater: str):
        super().__init__(f"rater {rater!r} already rated task {task_id}")


class Skipped(TaskConflict):
    """The rater skipped this task; it went to others."""

    def __init__(self, task_id: str, rater: str):
        super().__init__(f"rater {rater!r} skipped task {task_id}; it went to others")


@dataclass
class NewTask:
    kind: str  # "rate": one response; "rank": several responses to one prompt
    prompt: str
    responses: list[str]
    items: list[int]  # positions of the responses in the job's items


@dataclass
class Rating:
    rater: str
    score: float | None
    ranking: list[int] | None
    created_at: float
    seconds: float | None
    counted: bool = True  # False: the task had all its ratings (or its job had finished); kept for export


@dataclass
class Task:
    id: str
    job_id: str
    backend: str
    seq: int
    kind: str
    prompt: str
    responses: list[str]
    items: list[int]
    overlap: int
    status: str  # pending | done | expired
    created_at: float
    done_at: float | None = None
    ratings: list[Rating] = field(default_factory=list)


@dataclass
class Job:
    id: str
    backend: str
    request_id: str | None
    fingerprint: str
    n_items: int
    created_at: float
    deadline_at: float | None
    status: str  # pending | done
    result: dict | None
    finished_at: float | None


def _task(row) -> Task:
    (id_, job_id, backend, seq, kind, prompt, responses, items, overlap, status, created_at, done_at) = row
    return Task(id_, job_id, backend, seq, kind, prompt, json.loads(responses), json.loads(items), overlap, status,
                created_at, done_at)


def _job(row) -> Job:
    (id_, backend, request_id, fp, n_items, created_at, deadline_at, status, result, finished_at) = row
    return Job(id_, backend, request_id, fp, n_items, created_at, deadline_at, status,
               json.loads(result) if result else None, finished_at)


# Ratings plus hand-outs still within their lease: a task takes no more than `overlap` of them.
LIVE_CLAIMS = ("SELECT COUNT(*) FROM hq_assignments WHERE task_id = {task} "
               "AND (state = 'rated' OR (state = 'active' AND expires_at > ?))")
TASK_COLUMNS = "id, job_id, backend, seq, kind, prompt, responses, items, overlap, status, created_at, done_at"
JOB_COLUMNS = "id, backend, request_id, fingerprint, n_items, created_at, deadline_at, status, result, finished_at"


class Store:
    """Open with `Store.open(url)`: `sqlite:///path.db` or `postgresql://...`."""

    lock_row = ""  # appended to a SELECT that locks the row it reads (waits for it)
    claim_rows = ""  # appended to the SELECT that claims tasks (passes over rows others hold)

    @staticmethod
    def open(url: str) -> "Store":
        if url.startswith(("postgresql://", "postgres://")):
            return PostgresStore(url)
        if url.startswith("sqlite:///"):  # sqlite:///relative.db, sqlite:////absolute/path.db
            return SQLiteStore(Path(url[len("sqlite:///"):]).expanduser())
        raise ValueError(f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db or postgresql://...")

    # -- connection plumbing, one pair per database -------------------------------------------

    @contextmanager
    def transaction(self, write: bool = True):
        """Yields `execute(sql, params) -> cursor`, committed on exit. `write=False`: reads only."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def create_schema(self) -> None:
        with self.transaction() as execute:
            for statement in SCHEMA:
                execute(statement)

    # -- jobs ----------------------------------------------------------------------------------

    def create_job(self, backend: str, request_id: str | None, fingerprint: str, n_items: int,
                   tasks: list[NewTask], overlap: int, deadline_at: float | None) -> tuple[Job, bool]:
        """A new job and its tasks in one transaction; or, for a request_id seen before,
        the existing job (second value False). The caller compares fingerprints."""
        now = time.time()
        job_id = uuid.uuid4().hex
        with self.transaction() as execute:
            # Concurrent requests with one request_id: the second waits on the first's row,
            # inserts nothing, and reads the first's job.
            inserted = execute(
                f"INSERT INTO hq_jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, NULL) "
                "ON CONFLICT (backend, request_id) DO NOTHING",
                (job_id, backend, request_id, fingerprint, n_items, now, deadline_at),
            ).rowcount
            if not inserted:
                row = execute(f"SELECT {JOB_COLUMNS} FROM hq_jobs WHERE backend = ? AND request_id = ?",
                              (backend, request_id)).fetchone()
                return _job(row), False
            for seq, task in enumerate(tasks):
                execute(
                    f"INSERT INTO hq_tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, NULL)",
                    (uuid.uuid4().hex, job_id, backend, seq, task.kind, task.prompt, json.dumps(task.responses),
                     json.dumps(task.items), overlap, now),
                )
        return Job(job_id, backend, request_id, fingerprint, n_items, now, deadline_at, "pending", None, None), True

    def job(self, job_id: str) -> Job | None:
        with self.transaction(write=False) as execute:
            row = execute(f"SELECT {JOB_COLUMNS} FROM hq_jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_tasks(self, job_id: str) -> list[Task]:
        """The job's tasks in order, each with its ratings."""
        with self.transaction(write=False) as execute:
            tasks = [_task(r) for r in execute(
                f"SELECT {TASK_COLUMNS} FROM hq_tasks WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()]
            self._attach_ratings(execute, tasks)
        return tasks

    def overdue_jobs(self, backend: str) -> list[Job]:
        """Pending jobs past their deadline (oldest first), for the fallback sweep."""
        with self.transaction(write=False) as execute:
            rows = execute(
                f"SELECT {JOB_COLUMNS} FROM hq_jobs WHERE backend = ? AND status = 'pending' AND deadline_at < ? "
                f"ORDER BY deadline_at LIMIT {MAX_JOB_SWEEP}", (backend, time.time())).fetchall()
        return [_job(r) for r in rows]

    def task(self, task_id: str) -> Task | None:
        with self.transaction(write=False) as execute:
            row = execute(f"SELECT {TASK_COLUMNS} FROM hq_tasks WHERE id = ?", (task_id,)).fetchone()
            return self._with_ratings(execute, _task(row)) if row else None

    def finish_job(self, job_id: str, result: dict) -> Job:
        """Record the job's final result once; a job finished before keeps its first result.
        Its tasks still unrated are expired (taken out of the raters' queue)."""
        now = time.time()
        with self.transaction() as execute:
            updated = execute(
                "UPDATE hq_jobs SET status = 'done', result = ?, finished_at = ? WHERE id = ? AND status = 'pending'",
                (json.dumps(result), now, job_id),
            ).rowcount
            if updated:
                execute("UPDATE hq_tasks SET status = 'expired', done_at = ? WHERE job_id = ? AND status = 'pending'",
                        (now, job_id))
            row = execute(f"SELECT {JOB_COLUMNS} FROM hq_jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row)

    # -- raters --------------------------------------------------------------------------------

    def claim_next(self, backend: str, rater: str, lease_s: float) -> Task | None:
        """The rater's next task: the one already handed to them and not yet rated, else the
        oldest pending task they have not rated or skipped whose ratings plus live hand-outs
        are fewer than its overlap. Claimed under a row lock, so no two raters get a task
        that wants one rating."""
        now = time.time()
        with self.transaction() as execute:
            row = execute(
                f"SELECT {', '.join('t.' + c for c in TASK_COLUMNS.split(', '))} FROM hq_tasks t "
                "JOIN hq_assignments a ON a.task_id = t.id "
                "WHERE t.backend = ? AND t.status = 'pending' AND a.rater = ? AND a.state = 'active' "
                "AND a.expires_at > ? ORDER BY t.created_at, t.seq LIMIT 1",
                (backend, rater, now),
            ).fetchone()
            if row is not None:
                return self._with_ratings(execute, _task(row))
            passed: list[str] = []
            for _ in range(CLAIM_ATTEMPTS):
                not_passed = f"AND id NOT IN ({', '.join('?' for _ in passed)}) " if passed else ""
                row = execute(
                    f"SELECT {TASK_COLUMNS} FROM hq_tasks t WHERE backend = ? AND status = 'pending' "
                    "AND NOT EXISTS (SELECT 1 FROM hq_assignments a WHERE a.task_id = t.id AND a.rater = ? "
                    "AND a.state <> 'active') "
                    f"AND ({LIVE_CLAIMS.format(task='t.id')}) < overlap {not_passed}"
                    f"ORDER BY created_at, seq LIMIT 1{self.claim_rows}",
                    (backend, rater, now, *passed),
                ).fetchone()
                if row is None:
                    return None
                task = _task(row)
                # Counted again now that the row lock is held: every claim of this task holds that
                # lock while it counts and inserts, so this count cannot go stale before we insert.
                (taken,) = execute(LIVE_CLAIMS.format(task="?"), (task.id, now)).fetchone()
                if taken < task.overlap:
                    execute(
                        "INSERT INTO hq_assignments (task_id, rater, state, assigned_at, expires_at) "
                        "VALUES (?, ?, 'active', ?, ?) ON CONFLICT (task_id, rater) DO UPDATE "
                        "SET state = 'active', assigned_at = excluded.assigned_at, expires_at = excluded.expires_at",
                        (task.id, rater, now, now + lease_s),
                    )
                    return self._with_ratings(execute, task)
                passed.append(task.id)  # filled up since the snapshot: try the next one
        return None

    def rate(self, task_id: str, rater: str, score: float | None, ranking: list[int] | None) -> tuple[Task, bool]:
        """Store a rating (a score, or a ranking best first). Returns the task and whether this
        call stored it (False: the identical rating was stored before, e.g. a retried save)."""
        now = time.time()
        with self.transaction() as execute:
            row = execute(f"SELECT {TASK_COLUMNS} FROM hq_tasks WHERE id = ?{self.lock_row}", (task_id,)).fetchone()
            if row is None:
                raise TaskNotFound(task_id)
            task = _task(row)
            assignment = execute(
                "SELECT state, assigned_at FROM hq_assignments WHERE task_id = ? AND rater = ?", (task_id, rater)
            ).fetchone()
            if assignment is None:
                raise NotAssigned(task_id, rater)
            if assignment[0] == "skipped":
                raise Skipped(task_id, rater)
            previous = execute(
                "SELECT score, ranking FROM hq_ratings WHERE task_id = ? AND rater = ?", (task_id, rater)
            ).fetchone()
            if previous is not None:
                same = previous[0] == score and (json.loads(previous[1]) if previous[1] else None) == ranking
                if not same:
                    raise AlreadyRated(task_id, rater)
                return self._with_ratings(execute, task), False
            (count,) = execute("SELECT COUNT(*) FROM hq_ratings WHERE task_id = ? AND counted = 1",
                               (task_id,)).fetchone()
            # A rating after the task got its ratings (this rater's lease had run out and another
            # rater took over) or after its job finished is kept, but does not change the reward.
            counted = task.status == "pending" and count < task.overlap
            execute(
                "INSERT INTO hq_ratings (task_id, rater, score, ranking, created_at, seconds, counted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task_id, rater, score, json.dumps(ranking) if ranking is not None else None, now,
                 now - assignment[1], int(counted)),
            )
            execute("UPDATE hq_assignments SET state = 'rated' WHERE task_id = ? AND rater = ?", (task_id, rater))
            count += counted
            if task.status == "pending" and count >= task.overlap:
                execute("UPDATE hq_tasks SET status = 'done', done_at = ? WHERE id = ?", (now, task_id))
                task.status, task.done_at = "done", now
            return self._with_ratings(execute, task), True

    def skip(self, task_id: str, rater: str) -> None:
        """The rater passes on this task; it is never handed to them again."""
        now = time.time()
        with self.transaction() as execute:
            if execute("SELECT 1 FROM hq_tasks WHERE id = ?", (task_id,)).fetchone() is None:
                raise TaskNotFound(task_id)
            state = execute("SELECT state FROM hq_assignments WHERE task_id = ? AND rater = ?",
                            (task_id, rater)).fetchone()
            if state is None:
                raise NotAssigned(task_id, rater)
            if state[0] == "rated":
                raise AlreadyRated(task_id, rater)
            execute("UPDATE hq_assignments SET state = 'skipped', expires_at = ? WHERE task_id = ? AND rater = ?",
                    (now, task_id, rater))

    def waiting_for(self, backend: str, rater: str) -> int:
        """Pending tasks this rater could still rate (not rated or skipped by them)."""
        with self.transaction(write=False) as execute:
            (n,) = execute(
                "SELECT COUNT(*) FROM hq_tasks t WHERE backend = ? AND status = 'pending' AND NOT EXISTS "
                "(SELECT 1 FROM hq_assignments a WHERE a.task_id = t.id AND a.rater = ? AND a.state <> 'active')",
                (backend, rater),
            ).fetchone()
        return n

    # -- reading everything (metrics, export) ----------------------------------------------------

    def queue_stats(self, backend: str) -> dict:
        with self.transaction(write=False) as execute:
            pending, oldest = execute(
                "SELECT COUNT(*), MIN(created_at) FROM hq_tasks WHERE backend = ? AND status = 'pending'", (backend,)
            ).fetchone()
        return {"pending": pending, "oldest_pending_age_s": (time.time() - oldest) if oldest else 0.0}

    def rated_tasks(self, backend: str) -> list[Task]:
        """Every task with at least one rating, oldest first, ratings attached."""
        with self.transaction(write=False) as execute:
            tasks = [_task(r) for r in execute(
                f"SELECT {TASK_COLUMNS} FROM hq_tasks t WHERE backend = ? AND EXISTS "
                "(SELECT 1 FROM hq_ratings r WHERE r.task_id = t.id) ORDER BY created_at, seq", (backend,)).fetchall()]
            self._attach_ratings(execute, tasks)
        return tasks

    # -- helpers -----------------------------------------------------------------------------------

    def _with_ratings(self, execute, task: Task) -> Task:
        self._attach_ratings(execute, [task])
        return task

    @staticmethod
    def _attach_ratings(execute, tasks: list[Task]) -> None:
        by_id = {t.id: t for t in tasks}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = execute(
                "SELECT task_id, rater, score, ranking, created_at, seconds, counted FROM hq_ratings "
                f"WHERE task_id IN ({', '.join('?' for _ in chunk)}) ORDER BY created_at, rater",
                tuple(chunk),
            ).fetchall()
            for task_id, rater, score, ranking, created_at, seconds, counted in rows:
                by_id[task_id].ratings.append(
                    Rating(rater, score, json.loads(ranking) if ranking else None, created_at, seconds, bool(counted)))


class SQLiteStore(Store):
    """One connection, one writer at a time; WAL lets `human export` read while serving."""

    def __init__(self, path: Path):
        self.path = path
        self.url = f"sqlite:///{path}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk
        self._db.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def transaction(self, write: bool = True):
        # Writers take the write lock up front (no deadlock upgrading a read); readers do not,
        # so `human export` in another process reads while the service writes (WAL).
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite {self.path}: {exc}") from exc

            def execute(sql: str, params: tuple = ()):
                try:
                    return self._db.execute(sql, params)
                except sqlite3.Error as exc:  # disk full, I/O error, ...: retryable from the caller's side
                    raise StoreError(f"SQLite {self.path}: {exc}") from exc

            try:
                yield execute
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"SQLite {self.path}: commit failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresStore(Store):
    """A small connection pool; a connection broken by a server restart is replaced on checkout."""

    lock_row = " FOR UPDATE"
    claim_rows = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.url = url
        try:  # checked here, so a malformed URL (and its password) never reaches the pool's log
            options = conninfo_to_dict(url).get("options") or ""
        except psycopg.Error:
            raise StoreError(f"invalid PostgreSQL URL {redact_url(url)} (is the password percent-encoded?)") from None
        # A query stuck on a lock or a dead peer fails after this, instead of holding a thread.
        options = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
        try:  # one plain connection first: an unreachable server fails in seconds, with its reason
            psycopg.connect(url, connect_timeout=5, options=options).close()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
        self._pool = ConnectionPool(url, min_size=1, max_size=8, open=False, check=ConnectionPool.check_connection,
                                    kwargs={"autocommit": False, "options": options})
        try:
            self._pool.open(wait=True, timeout=10)
        except Exception as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc

    def create_schema(self) -> None:
        with self.transaction() as execute:
            execute("SELECT pg_advisory_xact_lock(7215)")  # replicas starting together create it once
            for statement in SCHEMA:
                execute(statement)

    @contextmanager
    def transaction(self, write: bool = True):
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn:
                with conn.transaction():
                    cursor = conn.cursor()

                    def execute(sql: str, params: tuple = ()):
                        cursor.execute(sql.replace("?", "%s"), params)
                        return cursor

                    yield execute
        except psycopg.Error as exc:  # connection lost, server restarting, ...: nothing was committed
            raise StoreError(f"PostgreSQL: {exc}") from exc

    def close(self) -> None:
        self._pool.close()


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    url = re.sub(r"(password=)[^&\s]*", r"\1***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
