"""From items to tasks, and from ratings back to one reward per item.

A rank list of n responses maps onto the rating scale linearly: the best gets
`scale.max`, the worst `scale.min`, the others evenly between. With several
raters per task (overlap) an item's reward is the mean of their values.
Agreement between raters: Krippendorff's alpha (interval) over scores, and the
share of response pairs that two raters order the same way over rankings.
"""

from __future__ import annotations

from itertools import combinations

from reward_service.items import Item
from reward_service.config import RatingScale
from reward_service.human.store import NewTask, Task


def make_tasks(items: list[Item], rank_groups: bool, max_rank_size: int) -> list[NewTask]:
    """One rating task per item; with `rank_groups`, items sharing a prompt form one rank
    list instead (split into lists of at most `max_rank_size`). Tasks follow item order."""
    if not rank_groups:
        return [NewTask("rate", item.prompt, [item.response], [i]) for i, item in enumerate(items)]
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.prompt, []).append(i)
    tasks = []
    for prompt, indices in groups.items():
        for start in range(0, len(indices), max_rank_size):
            chunk = indices[start:start + max_rank_size]
            kind = "rank" if len(chunk) > 1 else "rate"
            tasks.append(NewTask(kind, prompt, [items[i].response for i in chunk], chunk))
    return sorted(tasks, key=lambda t: t.items[0])


def rank_values(ranking: list[int], scale: RatingScale) -> list[float]:
    """Value of each response (by response index) given a ranking, best first."""
    n = len(ranking)
    values = [0.0] * n
    for position, response in enumerate(ranking):
        values[response] = scale.max - position * (scale.max - scale.min) / (n - 1)
    return values


def rater_values(task: Task, scale: RatingScale, counted_only: bool = False) -> list[list[float]]:
    """Per rater, the value they gave each response of the task (`counted_only`: only the
    ratings that make the reward, not those that arrived after the task had its ratings)."""
    out = []
    for rating in task.ratings:
        if counted_only and not rating.counted:
            continue
        if rating.ranking is not None:
            out.append(rank_values(rating.ranking, scale))
        else:
            out.append([rating.score])
    return out


def response_means(task: Task, scale: RatingScale, counted_only: bool = False) -> tuple[list[float | None], int]:
    """Each response's mean value over the task's raters (None while unrated), and how many raters."""
    per_rater = rater_values(task, scale, counted_only)
    if not per_rater:
        return [None] * len(task.responses), 0
    return [sum(v[i] for v in per_rater) / len(per_rater) for i in range(len(task.responses))], len(per_rater)


def item_rewards(tasks: list[Task], n_items: int, scale: RatingScale) -> tuple[list[float | None], list[int]]:
    """Each item's reward (mean over its raters; None while unrated) and its number of ratings."""
    rewards: list[float | None] = [None] * n_items
    counts = [0] * n_items
    for task in tasks:
        means, raters = response_means(task, scale, counted_only=True)
        for item, mean in zip(task.items, means):
            rewards[item], counts[item] = mean, raters
    return rewards, counts


def validate_rating(task: Task, scale: RatingScale, score: float | None, ranking: list[int] | None) -> str | None:
    """Why this rating does not fit the task, or None."""
    if task.kind == "rate":
        if score is None or ranking is not None:
            return "this task takes a `score`"
        allowed = scale.values()
        if not any(abs(score - v) < 1e-9 for v in allowed):
            return f"score must be one of {', '.join(f'{v:g}' for v in allowed)}"
        return None
    if ranking is None or score is not None:
        return "this task takes a `ranking`: response indices, best first"
    if sorted(ranking) != list(range(len(task.responses))):
        return f"ranking must order every response index 0..{len(task.responses) - 1} exactly once"
    return None


def task_agreement(task: Task, scale: RatingScale) -> float | None:
    """1 = raters agree fully. Scores: 1 - mean absolute pairwise difference / scale range.
    Rankings: share of response pairs ordered the same by two raters. None below 2 ratings."""
    if len(task.ratings) < 2:
        return None
    if task.kind == "rank":
        rankings = [r.ranking for r in task.ratings]
        return sum(_concordance(a, b) for a, b in combinations(rankings, 2)) / (len(rankings) * (len(rankings) - 1) / 2)
    scores = [r.score for r in task.ratings]
    spread = sum(abs(a - b) for a, b in combinations(scores, 2)) / (len(scores) * (len(scores) - 1) / 2)
    return 1.0 - spread / (scale.max - scale.min)


def _concordance(a: list[int], b: list[int]) -> float:
    pos_a = {r: i for i, r in enumerate(a)}
    pos_b = {r: i for i, r in enumerate(b)}
    pairs = list(combinations(range(len(a)), 2))
    same = sum((pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]) for x, y in pairs)
    return same / len(pairs)


def krippendorff_alpha_interval(units: list[list[float]]) -> float | None:
    """Krippendorff's alpha for interval data; `units` holds each task's scores from its raters.
    Units with fewer than 2 values are not pairable and are ignored. None when undefined."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    if n < 2:
        return None
    observed = sum(
        sum((a - b) ** 2 for a, b in combinations(u, 2)) * 2 / (len(u) - 1) for u in pairable
    ) / n
    expected = sum((a - b) ** 2 for a, b in combinations(values, 2)) * 2 / (n * (n - 1))
    if expected == 0:
        return 1.0 if observed == 0 else None
    return 1.0 - observed / expected


def agreement_summary(tasks: list[Task], scale: RatingScale) -> dict:
    """Over every task rated at least twice."""
    rate_units = [[r.score for r in t.ratings] for t in tasks if t.kind == "rate" and len(t.ratings) >= 2]
    rank_tasks = [t for t in tasks if t.kind == "rank" and len(t.ratings) >= 2]
    rank_agreements = [task_agreement(t, scale) for t in rank_tasks]
    return {
        "score_tasks_multiply_rated": len(rate_units),
        "krippendorff_alpha_interval": krippendorff_alpha_interval(rate_units),
        "rank_tasks_multiply_rated": len(rank_tasks),
        "rank_pair_agreement": sum(rank_agreements) / len(rank_agreements) if rank_agreements else None,
    }
