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
from pathlib import Path

from reward_service.config import AuthSettings
from reward_service.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)


def read_keys(path: Path) -> list[str]:
    """One key per line; blank lines and `#` comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


class KeySet:
    def __init__(self, inline: list[str], file: str | None, what: str):
        self.inline = list(inline)
        self.file = Path(file).expanduser() if file else None
        self.what = what
        self._from_file: list[str] = []
        self._file_state: tuple | None = None
        if self.file is not None:
            try:
                self._refresh(strict=True)
            except OSError as exc:
                raise ValueError(f"cannot read {what} file {self.file}: {exc.strerror or exc}") from None

    def _refresh(self, strict: bool = False) -> None:
        """Re-read the key file if it changed; a file that vanished keeps the last keys read."""
        try:
            stat = os.stat(self.file)
        except OSError:
            if strict:
                raise
            return
        state = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if state != self._file_state:
            try:
                self._from_file = read_keys(self.file)
            except (OSError, UnicodeDecodeError) as exc:
                if strict:
                    raise
                log.warning("could not re-read %s file %s (%s); keeping the previous keys", self.what, self.file, exc)
                return
            self._file_state = state
            if not strict:
                log.info("%s file %s re-read: %d key(s)", self.what, self.file, len(self._from_file))

    @property
    def configured(self) -> bool:
        return bool(self.inline) or self.file is not None

    def matches(self, token: str | None) -> bool:
        if not token:
            return False
        if self.file is not None:
            self._refresh()
        given = token.encode()
        found = False
        for key in self.inline + self._from_file:  # no early exit: the time taken says nothing
            found |= hmac.compare_digest(given, key.encode())
        return found


class Authenticator:
    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self.api = KeySet(settings.api_keys, settings.api_keys_file, "api_keys")
        self.admin = KeySet(settings.admin_keys, settings.admin_keys_file, "admin_keys")

    @property
    def enabled(self) -> bool:
        return self.api.configured or self.admin.configured

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
