"""API keys: who may score, and who may administer.

Keys are bearer tokens (`Authorization: Bearer <key>`), listed in the config
and/or in a file with one key per line. The file is re-read whenever it changes,
so keys rotate without a restart: add the new key, move clients over, remove the
old one. With no keys configured at all, auth is off, which `serve` allows only
on a loopback address. Keys are compared in constant time and never logged.
Raters use their own tokens (the human backend's `raters`), not these keys.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from reward_service.config import MIN_KEY_LENGTH, AuthSettings
from reward_service.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

RECHECK_S = 1.0  # a key file is re-read at least this often, even if its stat looks unchanged


def find_token(token: str | None, named: dict[str, str]) -> str | None:
    """The name whose secret equals `token`, compared in constant time over all of them
    (no early exit: the time taken says nothing about which, or how much, matched)."""
    if not token:
        return None
    given = token.encode()
    found = None
    for name, secret in named.items():
        if hmac.compare_digest(given, secret.encode()):
            found = name
    return found


def read_keys(path: Path) -> list[str]:
    """One key per line; blank lines and whole-line `#` comments ignored. Raises ValueError
    for a key shorter than MIN_KEY_LENGTH (the line number is named, never the key)."""
    keys = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < MIN_KEY_LENGTH or any(c.isspace() for c in line):
            raise ValueError(f"{path}:{number}: a key must be one word of at least {MIN_KEY_LENGTH} characters")
        keys.append(line)
    return keys


class KeySet:
    def __init__(self, inline: list[str], file: str | None, what: str):
        self.inline = list(inline)
        self.file = Path(file).expanduser() if file else None
        self.what = what
        self._from_file: list[str] = []
        self._file_state: tuple | None = None
        self._checked_at = 0.0
        if self.file is not None:
            try:
                self._from_file = read_keys(self.file)
            except OSError as exc:
                raise ValueError(f"cannot read {what} file {self.file}: {exc.strerror or exc}") from None
            self._file_state = self._stat()
            self._checked_at = time.monotonic()

    def _stat(self) -> tuple | None:
        try:
            stat = os.stat(self.file)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)

    def _refresh(self) -> None:
        """Re-read the key file when its stat changed, or every RECHECK_S (a same-size rewrite
        within one timestamp tick). A file that vanished revokes its keys; an unreadable or
        invalid one keeps the previous keys, with a warning (never the keys themselves)."""
        state = self._stat()
        now = time.monotonic()
        if state == self._file_state and now - self._checked_at < RECHECK_S:
            return
        self._checked_at = now
        if state is None:
            if self._from_file:
                log.warning("%s file %s is gone: its keys are revoked", self.what, self.file)
            self._from_file, self._file_state = [], None
            return
        try:
            keys = read_keys(self.file)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("could not re-read %s file %s (%s); keeping the previous keys", self.what, self.file, exc)
            self._file_state = state  # warn once per change, not on every request
            return
        if state != self._file_state or keys != self._from_file:
            log.info("%s file %s re-read: %d key(s)", self.what, self.file, len(keys))
        self._from_file, self._file_state = keys, state

    def matches(self, token: str | None) -> bool:
        if self.file is not None:
            self._refresh()
        return find_token(token, {key: key for key in self.inline + self._from_file}) is not None


class Authenticator:
    def __init__(self, settings: AuthSettings, rater_tokens: Iterable[str] = ()):
        """Raises ValueError for an unreadable key file, or a rater token that is also a key
        (the config's own keys are checked when it loads; key files are read here)."""
        self.settings = settings
        self.api = KeySet(settings.api_keys, settings.api_keys_file, "api_keys")
        self.admin = KeySet(settings.admin_keys, settings.admin_keys_file, "admin_keys")
        if any(self.api.matches(token) or self.admin.matches(token) for token in rater_tokens):
            raise ValueError("a rater token is also an API or admin key: give raters tokens of their own")

    @property
    def enabled(self) -> bool:
        return self.settings.keys_configured

    def check_api(self, token: str | None) -> None:
        """Scoring and jobs: an API key (an admin key also works)."""
        if not self.enabled or self.api.matches(token) or self.admin.matches(token):
            return
        raise Unauthorized("a valid API key is required as `Authorization: Bearer <key>`")

    def check_admin(self, token: str | None) -> None:
        """Reload, export: an admin key."""
        if not self.enabled or self.admin.matches(token):
            return
        if self.api.matches(token):
            raise Forbidden("this route needs an admin key; an API key is not enough")
        raise Unauthorized("an admin key is required as `Authorization: Bearer <key>`")
