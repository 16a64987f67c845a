"""FastAPI dependencies, as `Annotated` aliases: `caller: CallerDep`, `gw: GatewayDep`.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from gateway.auth import Caller, bearer_token
from gateway.errors import Unauthenticated

if TYPE_CHECKING:
    from gateway.app import Gateway


async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated["Gateway", Depends(get_gateway)]


async def get_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    return await request.app.state.gateway.keys.verify(authorization)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = request.app.state.gateway.settings.admin_key
    presented = bearer_token(authorization)
    if expected is None or not secrets.compare_digest(presented, expected.get_secret_value()):
        raise Unauthenticated("Incorrect admin key.")


AdminDep = Depends(require_admin)
