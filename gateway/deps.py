"""FastAPI dependencies as typed `Annotated` aliases, each built on the one before:

    gw: GatewayDep        the process's parts (gateway/state.py)
    caller: CallerDep     the tenant whose API key is presented (401 otherwise)
    gw: AdminDep          the gateway, once the admin key is checked (401 otherwise)

Every dependency is `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every
request. The two completion routes skip FastAPI's routing and dependency solving altogether and call `gateway_of`
and `KeyVerifier.verify` themselves: the same handler costs 4-5x the CPU through them (~65 against ~14 us a request;
`python -m bench.completion_route`).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.auth import Caller, bearer_token
from gateway.errors import Unauthenticated
from gateway.state import Gateway


def gateway_of(request: Request) -> Gateway:
    """The gateway serving this request; the one typed way to it from a request."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_gateway(request: Request) -> Gateway:
    return gateway_of(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]

Authorization = Annotated[str | None, Header()]


async def get_caller(gw: GatewayDep, authorization: Authorization = None) -> Caller:
    return await gw.keys.verify(authorization)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(gw: GatewayDep, authorization: Authorization = None) -> Gateway:
    expected = gw.settings.admin_key
    presented = bearer_token(authorization)
    if expected is None or not secrets.compare_digest(presented, expected.get_secret_value()):
        raise Unauthenticated("Incorrect admin key.")
    return gw


AdminDep = Annotated[Gateway, Depends(require_admin)]
