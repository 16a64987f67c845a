"""Reading `POST /v1/files` (multipart: `file`, `purpose`) within the file size limit: a declared length above it
is refused before anything is read, and a body that grows past it is refused as soon as it does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import BadRequest, PayloadTooLarge

MULTIPART_SLACK = 64 * 1024  # part headers and the small fields around the file


@dataclass
class Upload:
    file: UploadFile  # spooled to disk past 1 MB by the parser
    filename: str
    purpose: str


@contextlib.asynccontextmanager
async def read_upload(request: Request, max_bytes: int) -> AsyncIterator[Upload]:
    """The uploaded file and its purpose; its spool is removed when the block ends."""
    limit = max_bytes + MULTIPART_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(max_bytes))
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Upload the file as multipart/form-data, in the field `file`, with `purpose`.", param="file")
    parser = MultiPartParser(request.headers, _limited(request.stream(), limit, max_bytes), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"The multipart form could not be read: {exc.message}", param="file") from None
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise BadRequest("Upload the file in the multipart field `file`.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise BadRequest("Missing `purpose`: upload fine-tuning data with purpose `fine-tune`.", param="purpose")
        if (upload.size or 0) > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
        yield Upload(upload, upload.filename or "", purpose)
    finally:
        await form.close()


async def _limited(stream: AsyncIterator[bytes], limit: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(_too_large(max_bytes))
        yield chunk


def _too_large(max_bytes: int) -> str:
    return f"The file is larger than {max_bytes} bytes (LORAFLOW_FINE_TUNING__MAX_FILE_BYTES), the largest accepted."
