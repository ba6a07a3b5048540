"""Accuracy of the builtin `sentiment` model and of VADER (`lexicon`) on the hard held-out reviews.

    .venv/bin/python bench/hard_reviews.py                 # seconds; prints a table, writes JSON
    .venv/bin/python bench/hard_reviews.py --model DIR     # another sentiment model folder

The set is tests/data/hard_reviews.jsonl (negation, contrast, sarcasm, understatement, misleading
openings, weighed verdicts; written for this project, none from the training corpus); the blind
set, tests/data/hard_reviews_blind.jsonl, is measured beside it, and only its accuracies are
shown or written (its reviews, and which ones a model gets wrong, stay unread). Both
backends are built from the default config's settings (the model is also measured at fp32) and
score each review as the response of an item with an empty prompt, as `/score` does; a review is
read right when its reward is above 0.5 for a positive verdict, at most 0.5 for a negative one.
Nothing is built or trained here: the builtin model must already be in the cache
(`reward-service models build sentiment`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reward_service.training import hard_reviews  # noqa: E402


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = [f"{'':16}" + "".join(f"{n:>22}" for n in names)]
    first = next(iter(results.values()))
    lines.append(f"{'all':16}" + "".join(f"{r['accuracy']:>14.3f} ({r['correct']:>2}/{r['n']:>2})"
                                         for r in results.values()))
    for kind in first["per_kind"]:
        lines.append(f"{kind:16}" + "".join(
            f"{r['per_kind'][kind]['accuracy']:>14.3f} ({r['per_kind'][kind]['correct']:>2}/"
            f"{r['per_kind'][kind]['n']:>2})" for r in results.values()))
    for verdict in first["per_verdict"]:
        lines.append(f"{verdict + ' verdicts':16}" + "".join(
            f"{r['per_verdict'][verdict]['accuracy']:>14.3f} ({r['per_verdict'][verdict]['correct']:>2}/"
            f"{r['per_verdict'][verdict]['n']:>2})" for r in results.values()))
    return "\n".join(lines)


def measure(model: str | None, path: Path) -> dict[str, dict]:
    """The sentiment model as served and at fp32, and VADER, on the set at `path`."""
    return {
        "sentiment": hard_reviews.evaluate_hard_set(model, path),
        # fp32 too: int8 (what CPU serving picks) quantises activations per batch, so a review's
        # reward moves a little with the other reviews sent beside it; fp32's does not
        "sentiment-fp32": hard_reviews.evaluate_hard_set(model, path, precision="fp32"),
        "lexicon": hard_reviews.evaluate_lexicon_hard_set(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="sentiment model folder (default: the builtin one)")
    parser.add_argument("--data", type=Path, default=hard_reviews.HARD_REVIEWS_PATH)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "hard_reviews.json")
    parser.add_argument("--blind", type=Path, default=hard_reviews.BLIND_REVIEWS_PATH)
    args = parser.parse_args()

    started = time.perf_counter()
    results = measure(args.model, args.data)
    blind = {name: hard_reviews.blind_summary(r) for name, r in measure(args.model, args.blind).items()}
    elapsed = time.perf_counter() - started
    sentiment = results["sentiment"]

    print(f"hard reviews: {args.data} ({sentiment['n']} reviews)")
    for name, r in results.items():
        print(f"{name}: {r['model_version']} {r['served']}")
    print(table(results))
    print(f"\nblind set: {args.blind} ({blind['sentiment']['n']} reviews; accuracies only)")
    print(table(blind))
    wrong = [r for r in sentiment["reviews"] if not r["correct"]]
    print(f"\nsentiment wrong on {len(wrong)}:")
    for r in wrong:
        print(f"  [{r['kind']}, label {r['label']}, score {r['score']:.3f}] {r['text']}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    out = {"data": hard_reviews.shown_path(args.data), "blind_data": hard_reviews.shown_path(args.blind),
           "seconds": round(elapsed, 2), "machine": {"python": platform.python_version(),
                                                     "processor": platform.machine()},
           "results": results, "blind_results": blind}
    args.output.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
