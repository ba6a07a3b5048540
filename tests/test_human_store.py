"""The human queue's store, on real SQLite and real PostgreSQL (same tests for both)."""

import threading
import time

import pytest

from reward_service.human.store import AlreadyRated, NewTask, NotAssigned, Store, TaskNotFound


@pytest.fixture
def store(store_url):
    s = Store.open(store_url)
    s.create_schema()
    s.create_schema()  # idempotent: every replica runs it at start
    yield s
    s.close()


def _job(store, n=3, overlap=1, request_id=None, backend="human"):
    tasks = [NewTask("rate", f"prompt {i}", [f"response {i}"], [i]) for i in range(n)]
    return store.create_job(backend, request_id, "fp", n, tasks, overlap, None)


def test_a_job_and_its_tasks_are_stored_once_per_request_id(store):
    job, created = _job(store, request_id="step-1")
    again, created_again = _job(store, request_id="step-1")
    assert created and not created_again and again.id == job.id
    assert [t.prompt for t in store.job_tasks(job.id)] == ["prompt 0", "prompt 1", "prompt 2"]
    assert store.queue_stats("human")["pending"] == 3  # no duplicate tasks
    other, _ = _job(store, request_id="step-1", backend="other-human")  # request ids are per backend
    assert other.id != job.id


def test_overlap_one_never_hands_a_task_to_two_raters(store):
    job, _ = _job(store, n=2)
    a = store.claim_next("human", "alice", lease_s=60)
    b = store.claim_next("human", "bob", lease_s=60)
    assert a.id != b.id
    assert store.claim_next("human", "carol", lease_s=60) is None
    assert store.claim_next("human", "alice", lease_s=60).id == a.id  # the same task until rated or skipped


def test_overlap_two_hands_the_task_to_two_raters_and_no_third(store):
    job, _ = _job(store, n=1, overlap=2)
    a = store.claim_next("human", "alice", lease_s=60)
    b = store.claim_next("human", "bob", lease_s=60)
    assert a.id == b.id
    assert store.claim_next("human", "carol", lease_s=60) is None
    store.rate(a.id, "alice", 4.0, None)
    task, _ = store.rate(b.id, "bob", 2.0, None)
    assert task.status == "done" and sorted(r.score for r in task.ratings) == [2.0, 4.0]


def test_an_expired_lease_frees_the_task_for_another_rater(store):
    _job(store, n=1)
    a = store.claim_next("human", "alice", lease_s=0.05)
    assert store.claim_next("human", "bob", lease_s=60) is None
    time.sleep(0.1)
    assert store.claim_next("human", "bob", lease_s=60).id == a.id


def test_rating_is_idempotent_and_checked(store):
    _job(store, n=2)
    task = store.claim_next("human", "alice", lease_s=60)
    with pytest.raises(NotAssigned):
        store.rate(task.id, "bob", 3.0, None)
    with pytest.raises(TaskNotFound):
        store.rate("no-such-task", "alice", 3.0, None)
    first, stored = store.rate(task.id, "alice", 3.0, None)
    again, stored_again = store.rate(task.id, "alice", 3.0, None)  # a retried save
    assert stored and not stored_again and len(again.ratings) == 1
    with pytest.raises(AlreadyRated):
        store.rate(task.id, "alice", 5.0, None)
    assert store.claim_next("human", "alice", lease_s=60).id != task.id


def test_a_skipped_task_is_never_handed_back_but_goes_to_others(store):
    _job(store, n=1)
    task = store.claim_next("human", "alice", lease_s=60)
    store.skip(task.id, "alice")
    assert store.claim_next("human", "alice", lease_s=60) is None
    assert store.waiting_for("human", "alice") == 0
    assert store.claim_next("human", "bob", lease_s=60).id == task.id


def test_finishing_a_job_keeps_the_first_result_and_late_ratings(store):
    job, _ = _job(store, n=2)
    task = store.claim_next("human", "alice", lease_s=60)
    first = store.finish_job(job.id, {"scores": [1.0, 2.0]})
    second = store.finish_job(job.id, {"scores": [9.0, 9.0]})
    assert first.result == second.result == {"scores": [1.0, 2.0]}
    assert store.queue_stats("human")["pending"] == 0  # unrated tasks left the queue
    late, stored = store.rate(task.id, "alice", 5.0, None)  # the rater was mid-task: the rating is kept
    assert stored and late.status == "expired" and store.rated_tasks("human")[0].ratings[0].score == 5.0


def test_rankings_round_trip(store):
    tasks = [NewTask("rank", "p", ["a", "b", "c"], [0, 1, 2])]
    job, _ = store.create_job("human", None, "fp", 3, tasks, 1, None)
    task = store.claim_next("human", "alice", lease_s=60)
    store.rate(task.id, "alice", None, [2, 0, 1])
    assert store.job_tasks(job.id)[0].ratings[0].ranking == [2, 0, 1]


def test_concurrent_raters_never_share_a_task(store_url):
    """Eight raters, each with their own connection, claim and rate as fast as they can."""
    setup = Store.open(store_url)
    setup.create_schema()
    _job(setup, n=40)
    claimed: dict[str, list[str]] = {}
    errors = []

    def rater(name):
        store = Store.open(store_url)  # like separate replicas
        try:
            while (task := store.claim_next("human", name, lease_s=60)) is not None:
                claimed.setdefault(name, []).append(task.id)
                time.sleep(0.005)  # a rater reads before rating; lets the others interleave
                store.rate(task.id, name, 3.0, None)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=rater, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in claimed.values() for i in ids]
    assert not errors
    assert len(all_ids) == 40 and len(set(all_ids)) == 40
    assert len(claimed) > 1  # the work was really shared
    setup.close()


def test_free_tasks_behind_a_fully_claimed_head_are_still_handed_out(store):
    _job(store, n=20)
    held = {store.claim_next("human", f"r{i}", lease_s=600).id for i in range(16)}
    seventeenth = store.claim_next("human", "r16", lease_s=600)
    assert seventeenth is not None and seventeenth.id not in held


def test_concurrent_requests_with_one_request_id_make_one_job(store_url):
    results, errors = [], []

    def submit():
        s = Store.open(store_url)
        try:
            results.append(_job(s, n=3, request_id="same")[0].id)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            s.close()

    setup = Store.open(store_url)
    setup.create_schema()
    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert setup.queue_stats("human")["pending"] == 3
    setup.close()


def test_a_skipped_task_cannot_be_rated(store):
    from reward_service.human.store import Skipped

    _job(store, n=1)
    task = store.claim_next("human", "alice", lease_s=60)
    store.skip(task.id, "alice")
    with pytest.raises(Skipped):
        store.rate(task.id, "alice", 3.0, None)


def test_a_rating_after_a_lapsed_lease_is_kept_but_not_counted(store):
    job, _ = _job(store, n=1)
    task = store.claim_next("human", "bob", lease_s=0.05)
    time.sleep(0.1)  # bob's lease runs out; carol takes the task over and rates it
    assert store.claim_next("human", "carol", lease_s=60).id == task.id
    store.rate(task.id, "carol", 5.0, None)
    late, stored = store.rate(task.id, "bob", 1.0, None)  # bob comes back
    assert stored and [(r.rater, r.counted) for r in late.ratings] == [("carol", True), ("bob", False)]
    from reward_service.config import RatingScale
    from reward_service.human.rewards import item_rewards

    assert item_rewards(store.job_tasks(job.id), 1, RatingScale())[0] == [5.0]  # the reward is carol's alone
