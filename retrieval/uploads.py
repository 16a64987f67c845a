"""Uploaded files turned into checked, chunked documents: plain text, markdown, JSONL (`text` + metadata a line).

Everything here is validation and cutting, no model and no database, so a whole upload is checked before any of
it is embedded or stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from retrieval.chunking import Span, chunk_spans, markdown_spans
from retrieval.errors import (
    BadJSONLine,
    DocumentRejected,
    DocumentTooLarge,
    EmptyDocument,
    TooManyDocuments,
    UnsupportedFileType,
)
from retrieval.settings import RetrievalSettings

Kind = Literal["text", "markdown", "jsonl"]
KINDS: tuple[Kind, ...] = ("text", "markdown", "jsonl")
MAX_NAME_CHARS = 500

_BY_EXTENSION: dict[str, Kind] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_BY_CONTENT_TYPE: dict[str, Kind] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "application/jsonl": "jsonl",
    "application/x-jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/jsonlines": "jsonl",
}


@dataclass(frozen=True)
class Upload:
    """One file to index, as the admin API or the CLI received it.

    `kind` wins if given; otherwise the name's extension (.txt .md .markdown .jsonl .ndjson), then `content_type`.
    `metadata` (JSON-serialisable) is copied onto every chunk of the document.
    """

    name: str
    content: bytes | str
    kind: Kind | None = None
    content_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Piece:
    """One chunk to embed and store: `text[start:end]` of its document (or of its JSONL line's `text`)."""

    index: int
    start: int
    end: int
    text: str
    line: int | None
    metadata: dict[str, Any]

    def embedding_text(self) -> str:
        return embedding_text(self.text, self.metadata)


@dataclass(frozen=True)
class ParsedDocument:
    name: str
    kind: Kind
    sha256: str
    size_bytes: int
    metadata: dict[str, Any]
    pieces: list[Piece]


def embedding_text(text: str, metadata: dict[str, Any]) -> str:
    """What is embedded for a chunk: its text under its markdown heading path, if it has one.

    The heading goes into the vector, not into the stored text: a chunk deep in "Refunds" then matches questions
    about refunds even when its own sentences never say the word.
    """
    section = metadata.get("section") if isinstance(metadata, dict) else None
    return f"{section}\n{text}" if isinstance(section, str) and section else text


def parse_uploads(uploads: Sequence[Upload], settings: RetrievalSettings) -> list[ParsedDocument]:
    """Check and chunk every upload; the first bad one raises, so a caller stores all of them or none."""
    if not uploads:
        raise EmptyDocument("The upload contains no documents.")
    if len(uploads) > settings.max_documents_per_upload:
        raise TooManyDocuments(
            f"{len(uploads)} documents in one upload; at most {settings.max_documents_per_upload} are accepted."
        )
    return [parse_upload(upload, settings) for upload in uploads]


def parse_upload(upload: Upload, settings: RetrievalSettings) -> ParsedDocument:
    name = upload.name
    if not name or len(name) > MAX_NAME_CHARS:
        raise DocumentRejected(f"A document needs a name of 1 to {MAX_NAME_CHARS} characters.", param="name")
    raw = upload.content.encode() if isinstance(upload.content, str) else bytes(upload.content)
    if len(raw) > settings.max_document_bytes:
        raise DocumentTooLarge(
            f"{name}: {len(raw)} bytes; documents of at most {settings.max_document_bytes} bytes are accepted.",
            param=name,
        )
    kind = _kind(upload)
    metadata = _json_object(upload.metadata, name)
    text = _decode(raw, name)
    if not text.strip():
        raise EmptyDocument(f"{name} is empty.", param=name)
    size, overlap = settings.chunk_size, settings.chunk_overlap
    if kind == "jsonl":
        pieces = _jsonl_pieces(text, name, metadata, size, overlap)
    else:
        spans = markdown_spans(text, size, overlap) if kind == "markdown" else chunk_spans(text, size, overlap)
        pieces = [_piece(i, span, text, None, metadata) for i, span in enumerate(spans)]
    return ParsedDocument(name, kind, hashlib.sha256(raw).hexdigest(), len(raw), metadata, pieces)


def _kind(upload: Upload) -> Kind:
    if upload.kind is not None:
        if upload.kind not in KINDS:
            message = f"Unknown document kind {upload.kind!r}; one of {', '.join(KINDS)}."
            raise UnsupportedFileType(message, param="kind")
        return upload.kind
    extension = PurePath(upload.name).suffix.lower()
    if extension in _BY_EXTENSION:
        return _BY_EXTENSION[extension]
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[content_type]
    raise UnsupportedFileType(
        f"{upload.name}: unsupported file type {content_type or extension or '(none)'}; "
        "accepted: plain text (.txt), markdown (.md), JSONL (.jsonl).",
        param=upload.name,
    )


def _decode(raw: bytes, name: str) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedFileType(f"{name} is not UTF-8 text.", param=name) from None
    if "\x00" in text:
        raise UnsupportedFileType(f"{name} looks binary (it contains NUL characters).", param=name)
    # Offsets of chunks refer to this normalised text.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DocumentRejected(f"{name}: metadata must be a JSON object.", param="metadata")
    try:
        return json.loads(json.dumps(value))  # a deep, JSON-only copy: what the database will hold
    except (TypeError, ValueError):
        raise DocumentRejected(f"{name}: metadata must be JSON-serialisable.", param="metadata") from None


def _jsonl_pieces(text: str, name: str, metadata: dict[str, Any], size: int, overlap: int) -> list[Piece]:
    """Each line is chunked on its own (never across lines); its other fields become the chunks' metadata."""
    pieces: list[Piece] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadJSONLine(f"{name}, line {number}: not valid JSON ({exc.msg}).", param=name, line=number) from None
        if not isinstance(record, dict):
            raise BadJSONLine(f"{name}, line {number}: not a JSON object.", param=name, line=number)
        line_text = record.pop("text", None)
        if not isinstance(line_text, str) or not line_text.strip():
            raise BadJSONLine(f"{name}, line {number}: needs a non-empty string field `text`.", param=name, line=number)
        nested = record.pop("metadata", None)
        if nested is not None and not isinstance(nested, dict):
            raise BadJSONLine(f"{name}, line {number}: `metadata` must be an object.", param=name, line=number)
        line_metadata = {**metadata, **(nested or {}), **record}
        for span in chunk_spans(line_text, size, overlap):
            pieces.append(_piece(len(pieces), span, line_text, number, line_metadata))
    if not pieces:
        raise EmptyDocument(f"{name} has no lines with text.", param=name)
    return pieces


def _piece(index: int, span: Span, text: str, line: int | None, metadata: dict[str, Any]) -> Piece:
    chunk_metadata = dict(metadata)
    if span.section:
        chunk_metadata["section"] = span.section
    return Piece(index, span.start, span.end, text[span.start : span.end], line, chunk_metadata)
