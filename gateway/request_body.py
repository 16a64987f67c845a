"""Reading a request's JSON body into a wire type: refused (413) before it is read past its limit, refused (400)
when it is not a JSON object, and validated with the wire type's own errors turned into ours. Every route that reads
a body itself goes through `read_json`."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidJSON, PayloadTooLarge, validation_error

Wire = TypeVar("Wire", bound=BaseModel)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it passes `max_bytes`, declared or not."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than {max_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"The request body is larger than {max_bytes} bytes.")
    return bytes(body)


async def read_json(request: Request, wire_type: type[Wire], max_bytes: int) -> tuple[Wire, dict[str, Any]]:
    """The body as `wire_type`, and the JSON object it was read from (for routes that pass fields on unchanged)."""
    data = parse_object(await read_body(request, max_bytes))
    return validate(wire_type, data), data


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidJSON(
            "We could not parse the JSON body of your request. Send valid JSON with `Content-Type: application/json`."
        ) from None
    if not isinstance(data, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    return data


def validate(wire_type: type[Wire], data: dict[str, Any]) -> Wire:
    """`data` as `wire_type`; a validation error is a 400 naming the first offending field."""
    try:
        return wire_type.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
