"""Ratings out of the queue, as files `train-rm` reads directly.

- `pairs`:    {"prompt", "chosen", "rejected"} plus provenance (margin, source, task ids,
              raters, agreement), which `train-rm` ignores. From each rank task, every pair
              of responses its raters' mean values order; from rated tasks, every two
              responses to the same prompt whose mean ratings differ (among the latest 64
              rated responses of that prompt).
- `ranklist`: {"prompt", "ranking": [best, ..., worst]} per rank task (consensus order by
              mean value), and per prompt of rated responses; a response whose mean value
              ties another's is left out (a rank list cannot say "equal"; `pairs` still
              pairs it with the responses it beats or loses to).
- `ratings`:  every rated task with each rater's rating, the reward per response and the
              agreement; the raw record, for audits.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Iterator

from reward_service.config import RatingScale
from reward_service.human import rewards
from reward_service.human.store import Task

FORMATS = ("pairs", "ranklist", "ratings")
MAX_RATED_PER_PROMPT = 64  # at most 64 * 63 / 2 = 2016 pairs per prompt from single ratings


def _means(task: Task, scale: RatingScale) -> list[float]:
    """Every rating counts here, also those that came too late for the trainer's reward."""
    return rewards.response_means(task, scale)[0]


def _rated_by_prompt(tasks: list[Task], scale: RatingScale) -> dict[str, list[tuple[str, float, Task]]]:
    """Rated responses grouped by prompt; the most recent MAX_RATED_PER_PROMPT of each
    (PPO repeats prompts: pairing them all would grow with the square of the history)."""
    groups: dict[str, list[tuple[str, float, Task]]] = {}
    for task in tasks:
        if task.kind == "rate":
            groups.setdefault(task.prompt, []).append((task.responses[0], _means(task, scale)[0], task))
    return {prompt: rated[-MAX_RATED_PER_PROMPT:] for prompt, rated in groups.items()}


def pairs(tasks: list[Task], scale: RatingScale) -> Iterator[dict]:
    for task in tasks:
        if task.kind != "rank":
            continue
        means = _means(task, scale)
        agreement = rewards.task_agreement(task, scale)
        for a, b in combinations(range(len(task.responses)), 2):
            if means[a] == means[b]:
                continue
            hi, lo = (a, b) if means[a] > means[b] else (b, a)
            yield {"prompt": task.prompt, "chosen": task.responses[hi], "rejected": task.responses[lo],
                   "margin": means[hi] - means[lo], "source": "rank", "task_ids": [task.id],
                   "raters": len(task.ratings), "agreement": agreement}
    for prompt, rated in _rated_by_prompt(tasks, scale).items():
        for (text_a, mean_a, task_a), (text_b, mean_b, task_b) in combinations(rated, 2):
            if mean_a == mean_b or text_a == text_b:
                continue
            if mean_a < mean_b:
                text_a, mean_a, task_a, text_b, mean_b, task_b = text_b, mean_b, task_b, text_a, mean_a, task_a
            yield {"prompt": prompt, "chosen": text_a, "rejected": text_b, "margin": mean_a - mean_b,
                   "source": "rating", "task_ids": [task_a.id, task_b.id],
                   "raters": [len(task_a.ratings), len(task_b.ratings)]}


def ranklists(tasks: list[Task], scale: RatingScale) -> Iterator[dict]:
    for task in tasks:
        if task.kind != "rank":
            continue
        means = _means(task, scale)
        # raters who disagree can tie two responses: a rank list cannot say "equal", so those
        # responses are left out (as for rated responses below); `pairs` has no such pair either
        distinct = [i for i in range(len(task.responses)) if sum(m == means[i] for m in means) == 1]
        if len(distinct) < 2:
            continue
        order = sorted(distinct, key=lambda i: -means[i])
        yield {"prompt": task.prompt, "ranking": [task.responses[i] for i in order], "source": "rank",
               "task_ids": [task.id], "raters": len(task.ratings), "agreement": rewards.task_agreement(task, scale)}
    for prompt, rated in _rated_by_prompt(tasks, scale).items():
        counts: dict[float, int] = {}
        for _, mean, _ in rated:
            counts[mean] = counts.get(mean, 0) + 1
        distinct = sorted((r for r in rated if counts[r[1]] == 1), key=lambda r: -r[1])
        if len(distinct) >= 2:
            yield {"prompt": prompt, "ranking": [text for text, _, _ in distinct], "source": "rating",
                   "task_ids": [t.id for _, _, t in distinct]}


def ratings(tasks: list[Task], scale: RatingScale) -> Iterator[dict]:
    for task in tasks:
        yield {
            "task_id": task.id, "job_id": task.job_id, "kind": task.kind, "status": task.status,
            "prompt": task.prompt, "responses": task.responses, "reward": _means(task, scale),
            "agreement": rewards.task_agreement(task, scale),
            "ratings": [{"rater": r.rater, "score": r.score, "ranking": r.ranking, "seconds": r.seconds,
                         "created_at": r.created_at} for r in task.ratings],
        }


def lines(tasks: list[Task], scale: RatingScale, fmt: str) -> Iterator[str]:
    """JSON lines of the chosen format."""
    produce = {"pairs": pairs, "ranklist": ranklists, "ratings": ratings}[fmt]
    for record in produce(tasks, scale):
        yield json.dumps(record, ensure_ascii=False) + "\n"


def summary(tasks: list[Task], scale: RatingScale) -> dict:
    """Counts and inter-rater agreement over the rated tasks."""
    per_rater: dict[str, int] = {}
    seconds = []
    for task in tasks:
        for rating in task.ratings:
            per_rater[rating.rater] = per_rater.get(rating.rater, 0) + 1
            if rating.seconds is not None:
                seconds.append(rating.seconds)
    seconds.sort()
    return {
        "rated_tasks": len(tasks),
        "ratings": sum(per_rater.values()),
        "ratings_per_rater": per_rater,
        "median_seconds_to_rate": seconds[len(seconds) // 2] if seconds else None,
        "pairs": sum(1 for _ in pairs(tasks, scale)),
        "agreement": rewards.agreement_summary(tasks, scale),
    }
