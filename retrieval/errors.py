"""Every error retrieval raises. The gateway maps them to HTTP by class; the suggested status is on the right.

    RetrievalError                  500  the root
    ├── DocumentRejected            400  an upload that cannot be indexed; nothing of the upload was stored
    │   ├── UnsupportedFileType     400  (or 415) not plain text, markdown or JSONL, or not UTF-8 text
    │   ├── EmptyDocument           422  nothing but whitespace
    │   ├── BadJSONLine             422  a JSONL line that is not an object with a non-empty string `text`
    │   ├── DocumentTooLarge        413  over `max_document_bytes`
    │   └── TooManyDocuments        413  over `max_documents_per_upload`
    ├── InvalidQuery                400  top_k / min_score out of range, bad embedding input
    ├── DocumentNotFound            404  no such document for this tenant (also: another tenant's)
    └── EmbedderUnavailable         503  the embedding model could not be loaded or failed

Each carries `message`, `code` (a stable string for the OpenAI error body) and `param` (the offending field or
file name, when there is one).
"""

from __future__ import annotations


class RetrievalError(Exception):
    code = "retrieval_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class DocumentRejected(RetrievalError):
    code = "invalid_document"


class UnsupportedFileType(DocumentRejected):
    code = "unsupported_file_type"


class EmptyDocument(DocumentRejected):
    code = "empty_document"


class BadJSONLine(DocumentRejected):
    code = "invalid_jsonl"

    def __init__(self, message: str, *, param: str | None = None, line: int) -> None:
        super().__init__(message, param=param)
        self.line = line


class DocumentTooLarge(DocumentRejected):
    code = "document_too_large"


class TooManyDocuments(DocumentRejected):
    code = "too_many_documents"


class InvalidQuery(RetrievalError):
    code = "invalid_request"


class DocumentNotFound(RetrievalError):
    code = "document_not_found"


class EmbedderUnavailable(RetrievalError):
    code = "embedder_unavailable"
