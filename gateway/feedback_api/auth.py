"""Who may rate: a tenant's API key (any of its completions), or a feedback token (the one completion it names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header

from feedback.tokens import PREFIX as TOKEN_PREFIX
from gateway.auth import bearer_token
from gateway.deps import GatewayDep


@dataclass(frozen=True)
class Rater:
    tenant_id: str
    completion_id: str | None  # set for a feedback token: the only completion it may rate


async def get_rater(gw: GatewayDep, authorization: Annotated[str | None, Header()] = None) -> Rater:
    """The tenant key or feedback token in `Authorization: Bearer ...`; 401 when it is neither, or expired."""
    presented = bearer_token(authorization)
    if presented.startswith(TOKEN_PREFIX):
        # An HMAC check, no I/O: fine on the event loop. Altered, malformed or expired: InvalidToken, a 401.
        tenant_id, completion_id = gw.tokens.verify(presented)
        return Rater(tenant_id, completion_id)
    caller = await gw.keys.verify(authorization)
    return Rater(caller.tenant_id, None)


RaterDep = Annotated[Rater, Depends(get_rater)]
