"""Reading a request body with a size limit, so a huge body is refused before it is read."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from gateway.errors import InvalidJSON, PayloadTooLarge


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


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing it before reading past `max_bytes`."""
    body = await read_body(request, max_bytes)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidJSON(
            "We could not parse the JSON body of your request. Send valid JSON with `Content-Type: application/json`."
        ) from None
    if not isinstance(data, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    return data
