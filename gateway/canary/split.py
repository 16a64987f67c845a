"""Which arm of a canary serves a request: a hash of (canary id, end user or key id), so the split is sticky (the
same user always gets the same arm) and the same on every replica, with nothing stored per user."""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def to_candidate(canary_id: str, unit: str, share: float) -> bool:
    """True for the candidate arm: the first 8 bytes of sha256(canary id, unit) as a number in [0, 1), under
    `share`. A new canary (new id) reshuffles who is in which arm."""
    digest = hashlib.sha256(f"{canary_id}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE < share
