"""Development keys: made once and kept under var/ (mode 0600), so `make run` works with no set-up.

Production refuses to start without real keys (see Settings); this module is never used there.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from gateway.settings import Settings


def with_dev_keys(settings: Settings) -> Settings:
    """The settings, with any missing admin or secret key filled from var/ (created on first use)."""
    if settings.env == "production":
        return settings
    changes = {}
    if settings.admin_key is None:
        changes["admin_key"] = SecretStr(read_or_create(settings.var_dir / "admin-key", "lf_admin_"))
    if settings.secret_key is None:
        changes["secret_key"] = SecretStr(read_or_create(settings.var_dir / "secret-key", ""))
    return settings.model_copy(update=changes) if changes else settings


def read_or_create(path: Path, prefix: str) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = prefix + secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value
