"""The client SDK installs and runs with httpx alone: nothing of the server comes with it."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _base_requirements(distribution: str) -> list[str]:
    """What `pip install <distribution>` pulls directly: requirements without an extra."""
    return [r for r in importlib.metadata.requires(distribution) or [] if "extra ==" not in r]


def _import_names(distribution: str) -> set[str]:
    """Top-level modules of `distribution` and everything its base install pulls in."""
    by_dist: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_dist.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    seen, todo, names = set(), [distribution], set()
    while todo:
        dist = re.match(r"[A-Za-z0-9._-]+", todo.pop()).group(0).lower().replace("_", "-")
        if dist in seen:
            continue
        seen.add(dist)
        names |= by_dist.get(dist, set())
        try:
            todo.extend(_base_requirements(dist))
        except importlib.metadata.PackageNotFoundError:
            pass  # a requirement for another Python version, not installed here
    return names


def test_the_base_install_is_httpx_only():
    requirements = _base_requirements("reward-service")
    assert len(requirements) == 1 and requirements[0].startswith("httpx"), requirements


BLOCK_ALL_BUT = """
import importlib.abc, json, sys
allowed = set(sys.stdlib_module_names) | set(json.loads(sys.argv[1])) | {"trainer_client"}

class OnlyTheClient(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] not in allowed:
            raise ModuleNotFoundError(f"not installed with the client alone: {name}")

sys.meta_path.insert(0, OnlyTheClient())
from trainer_client.client import AsyncRewardClient, RewardClient
from trainer_client.trl_adapter import reward_function

with RewardClient(sys.argv[2], backend="lexicon") as client:
    result = client.score(["The movie was"], [" wonderful, I loved it"])
scores = reward_function(sys.argv[2], backend="lexicon")(prompts=["p"], completions=["awful"])
print(json.dumps({"sdk": result.scores, "trl": scores,
                  "heavy": sorted(m for m in ("torch", "numpy", "fastapi", "reward_service") if m in sys.modules)}))
"""


def test_the_client_sdk_scores_with_only_httpx_importable(lexicon_service):
    allowed = sorted(_import_names("httpx"))
    out = subprocess.run([sys.executable, "-c", BLOCK_ALL_BUT, json.dumps(allowed), lexicon_service],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sdk"][0] > 0.7 and result["trl"][0] < 0.3 and result["heavy"] == []
