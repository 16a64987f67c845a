"""Reading a multipart upload of documents within its own limit (not the completion body limit), into `Upload`s.

Fields: `file` (one or more files), `replace` (true/false), `metadata` (a JSON object copied onto every document).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import BadRequest, PayloadTooLarge
from retrieval.settings import RetrievalSettings
from retrieval.uploads import Upload

MULTIPART_SLACK = 64 * 1024  # part headers and the small fields around the documents themselves
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def upload_limit(settings: RetrievalSettings) -> int:
    """The largest upload body: every document at its largest, plus the multipart framing."""
    return settings.max_document_bytes * settings.max_documents_per_upload + MULTIPART_SLACK


async def read_uploads(request: Request, settings: RetrievalSettings) -> tuple[list[Upload], bool]:
    """(the uploaded documents, `replace`). 413 past the limit, before reading further; 400 for a bad form."""
    limit = upload_limit(settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Upload documents as multipart/form-data, one or more files in the field `file`.",
                         param="file")  # fmt: skip
    parser = MultiPartParser(
        request.headers, _limited(request.stream(), limit), max_files=settings.max_documents_per_upload, max_fields=16
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise PayloadTooLarge(
                f"More than {settings.max_documents_per_upload} documents in one upload; send them in several.",
                code="too_many_documents",
            ) from None
        raise BadRequest(f"The multipart form could not be read: {exc.message}", param="file") from None
    try:
        files = form.getlist("file")
        if not files or not all(isinstance(f, UploadFile) for f in files):
            raise BadRequest("Upload one or more files in the multipart field `file`.", param="file")
        replace = _flag(form.get("replace"), "replace")
        metadata = _metadata(form.get("metadata"))
        uploads = []
        for upload in files:
            assert isinstance(upload, UploadFile)
            content = await upload.read()
            uploads.append(Upload(upload.filename or "", content, content_type=upload.content_type, metadata=metadata))
        return uploads, replace
    finally:
        await form.close()


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The body, refused as soon as it passes `limit` (a chunked upload declares no length)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(_too_large(limit))
        yield chunk


def _too_large(limit: int) -> str:
    return f"The upload is larger than {limit} bytes; send the documents in several uploads."


def _flag(value: Any, name: str) -> bool:
    text = str(value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(f"`{name}` must be true or false.", param=name)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        metadata = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise BadRequest("`metadata` must be a JSON object.", param="metadata")
    return metadata
