"""Who is calling: a tenant's API key, checked against the store once and then trusted for a few seconds."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from cachetools import TTLCache
from sqlalchemy.orm import Session, sessionmaker

from gateway import keys, tenants
from gateway.errors import Unauthenticated


@dataclass(frozen=True)
class Caller:
    """A verified tenant key and what it carries."""

    tenant_id: str
    key_id: str
    default_adapter: str | None = None
    model_map: dict[str, str] = field(default_factory=dict)
    record: bool = True  # False for evaluation keys: their completions stay out of the record


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Missing API key: send `Authorization: Bearer <key>`.")
    return token.strip()


class KeyVerifier:
    """Maps a presented key to its Caller. A hit costs a dict lookup; a miss, one indexed query off the loop.

    Revocation on this replica takes effect at once (`forget`); on other replicas within `ttl_s`.
    """

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float, max_keys: int = 100_000) -> None:
        self._sessions = sessions
        self._cache: TTLCache[str, Caller | None] = TTLCache(maxsize=max_keys, ttl=ttl_s)

    async def verify(self, authorization: str | None) -> Caller:
        key_hash = keys.hash_key(bearer_token(authorization))
        try:
            caller = self._cache[key_hash]
        except KeyError:
            caller = await anyio.to_thread.run_sync(self._lookup, key_hash)
            self._cache[key_hash] = caller  # unknown keys are remembered too, so a bad key cannot hammer the store
        if caller is None:
            raise Unauthenticated("Incorrect API key provided.")
        return caller

    def _lookup(self, key_hash: str) -> Caller | None:
        with self._sessions() as session:
            row = tenants.find_active_key(session, key_hash)
            if row is None:
                return None
            return Caller(row.tenant_id, row.id, row.default_adapter, dict(row.model_map), row.record)

    def forget(self, key_id: str) -> None:
        for key_hash, caller in list(self._cache.items()):
            if caller is not None and caller.key_id == key_id:
                self._cache.pop(key_hash, None)
