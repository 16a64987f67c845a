"""The completion routes, answered before FastAPI's routing: the hot path of the gateway.

A completion is handled by the same route function either way; this only takes it the short way there. Through
FastAPI it would pass a linear match against every route, the dependency machinery, an exit stack and three
middlewares that each wrap `send` (so each chunk of a stream); here it costs a dict lookup. Errors are answered by
the app's own exception handlers, found as Starlette finds them (by class, most specific first); an unexpected
error goes on to Starlette's outermost guard, as it would have (a 500 in OpenAI's shape, logged). Measured with
`python -m bench.gateway_overhead` (issue 15).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.metrics import Metrics

Route = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class CompletionDispatch:
    """ASGI middleware: POSTs to `routes` go straight to their function; everything else to the app as usual."""

    def __init__(self, app: Any, routes: Mapping[str, Route], metrics: Metrics) -> None:
        self.app = app
        self.routes = dict(routes)
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response is made
        try:
            request = Request(scope, receive)
            try:
                response = await route(request)
            except Exception as exc:
                handler = _handler_for(scope["app"].exception_handlers, exc)
                if handler is None:
                    raise
                response = await handler(request, exc)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.count_http(scope["path"], status)


def _handler_for(handlers: Mapping[Any, Handler], exc: Exception) -> Handler | None:
    """The app's handler for this exception's class or its nearest base; None for the catch-all (Exception, 500),
    which Starlette leaves to its outermost middleware."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
