"""Every error the gateway raises, and the one place that turns them into OpenAI-shaped HTTP responses.

    GatewayError                    500 server_error
    ├── BadRequest                  400 invalid_request_error
    │   ├── InvalidJSON             400 (body is not JSON / not an object)
    │   └── RetrievalDisabled       400 retrieval_disabled (documents or grounding asked of a gateway without them)
    ├── Unauthenticated             401 invalid_api_key
    ├── Forbidden                   403 permission_denied (a read-only console session, a missing CSRF token;
    │                                   never for another tenant's anything: that is 404)
    ├── NotFound                    404 not_found
    │   └── ModelNotFound           404 model_not_found (also for another tenant's adapter: never 403)
    ├── Conflict                    409 conflict
    ├── PayloadTooLarge             413 request_too_large
    ├── AdapterRejected             422 invalid_adapter
    ├── UpstreamError               502 upstream_error (the engine answered with something unusable)
    ├── EngineUnavailable           503 engine_unavailable, with Retry-After
    └── Overloaded                  503 overloaded (the record cannot keep up), with Retry-After

Other parts raise their own errors (they do not import the gateway); `PART_ERRORS` maps them onto this tree,
keeping their `code` when they have one (retrieval's: `unsupported_file_type`, `document_not_found`, ...).

The body is always `{"error": {"message", "type", "param", "code"}}`; inside an SSE stream the same object goes
out as one `data:` event followed by `data: [DONE]`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from feedback import errors as record_errors
from retrieval import errors as retrieval_errors


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str] | None:
        return None


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class RetrievalDisabled(BadRequest):
    code = "retrieval_disabled"

    def __init__(self) -> None:
        super().__init__(
            "Retrieval is not enabled on this gateway (start it with LORAFLOW_RETRIEVAL__ENABLED=true).",
            param="retrieval",
        )


class Unauthenticated(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AdapterRejected(GatewayError):
    status = 422
    type = "invalid_request_error"
    code = "invalid_adapter"


class UpstreamError(GatewayError):
    status = 502
    type = "server_error"
    code = "upstream_error"


class EngineUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "engine_unavailable"

    def __init__(self, message: str = "No inference engine is available right now.", *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Overloaded(EngineUnavailable):
    code = "overloaded"


# Other parts' errors, most specific first: (their class, ours). The first match wins.
PART_ERRORS: list[tuple[type[Exception], type[GatewayError]]] = [
    (record_errors.RecordBackpressure, Overloaded),
    (record_errors.InvalidRequest, BadRequest),
    (record_errors.InvalidToken, Unauthenticated),
    (record_errors.NotFound, NotFound),
    (record_errors.IdempotencyConflict, Conflict),
    # Retrieval's errors.
    (retrieval_errors.DocumentTooLarge, PayloadTooLarge),
    (retrieval_errors.TooManyDocuments, PayloadTooLarge),
    (retrieval_errors.DocumentRejected, BadRequest),
    (retrieval_errors.InvalidQuery, BadRequest),
    (retrieval_errors.DocumentNotFound, NotFound),
    (retrieval_errors.EmbedderUnavailable, EngineUnavailable),
]


def part_error(exc: Exception) -> GatewayError:
    """Another part's error as one of ours, by class."""
    ours = next((ours for theirs, ours in PART_ERRORS if isinstance(exc, theirs)), GatewayError)
    message = getattr(exc, "message", str(exc))
    error: GatewayError
    if issubclass(ours, EngineUnavailable):
        error = ours(message, retry_after_s=max(1, round(getattr(exc, "retry_after_s", 1))))
    else:
        error = ours(message, param=getattr(exc, "param", None))
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        error.code = code
    return error


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def sse_error_event(error: GatewayError) -> bytes:
    """An error after a stream has started: one `data:` event with the error object, then `[DONE]`."""
    return b"data: " + json.dumps(error.body()).encode() + b"\n\ndata: [DONE]\n\n"


def install_handlers(app: FastAPI) -> None:
    """Map every exception to OpenAI's error shape, by class, in this one place."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(record_errors.RecordError)
    @app.exception_handler(retrieval_errors.RetrievalError)
    async def _part_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(part_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        classes: dict[int, type[GatewayError]] = {404: NotFound, 405: BadRequest, 401: Unauthenticated}
        error = classes.get(exc.status_code, GatewayError)(str(exc.detail))
        response = error_response(error)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(GatewayError("The server had an error while processing your request."))


def validation_error(errors: Any) -> BadRequest:
    """A pydantic error list as one 400, naming the first offending field the way OpenAI's `param` does."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = first.get("msg", "Invalid request.")
    return BadRequest(f"{message} ({param})" if param else message, param=param)
