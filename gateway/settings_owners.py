"""Tenant settings owned by parts the gateway does not import (the trainer's `training`, `schedule`, `evaluation`):
each part registers itself under the `loraflow.tenant_settings` entry-point group, and the gateway checks a change
with the owner's own rules before storing it. The admin API and the console both go through `check`.

An owner is a module (or object) with `KEYS` (the top-level settings keys it owns), `check(settings)` (raises
ValueError naming what is wrong) and `schema()` (JSON Schema of its settings, for the console's form). Loaded on
first use, not at start: a gateway that never changes a tenant's settings never imports the owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from gateway.errors import BadRequest
from gateway.feedback_api.retention import RETENTION_KEY, retention_of

log = logging.getLogger(__name__)
GROUP = "loraflow.tenant_settings"


@dataclass(frozen=True)
class SettingsOwner:
    name: str
    keys: tuple[str, ...]
    owner: Any

    def check(self, settings: dict[str, Any]) -> None:
        self.owner.check(settings)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.owner.schema()
        return schema


@cache
def owners() -> tuple[SettingsOwner, ...]:
    found = []
    for entry in entry_points(group=GROUP):
        try:
            owner = entry.load()
        except ImportError:  # the part's extra is not installed here: its settings are stored unchecked
            log.info("tenant settings of %s are not checked here: %s is not importable", entry.name, entry.value)
            continue
        found.append(SettingsOwner(entry.name, tuple(owner.KEYS), owner))
    return tuple(found)


def check(changes: dict[str, Any]) -> None:
    """400 naming the setting when the gateway (retention) or an owner refuses the keys it owns among `changes`;
    other keys pass through."""
    try:
        retention_of(changes)
    except ValueError as exc:
        raise BadRequest(str(exc), param=f"settings.{RETENTION_KEY}") from None
    for owner in owners():
        mine = {key: value for key, value in changes.items() if key in owner.keys}
        if not mine:
            continue
        try:
            owner.check(mine)
        except ValueError as exc:
            key = next(iter(mine)) if len(mine) == 1 else None
            raise BadRequest(str(exc), param=f"settings.{key}" if key else "settings") from None
