"""Every error the record raises; the gateway maps them to HTTP by class, in one place.

RecordError                     500 (a bug or a database failure)
├── InvalidRequest              400 invalid_request_error; `param` names the field
│   ├── InvalidRating           400 rating is not up/down, 1/-1 or true/false
│   ├── FieldTooLong            400 comment, correction, user or id longer than allowed
│   └── InvalidCursor           400 a listing cursor that this code did not issue
├── InvalidToken                401 a feedback token that is altered, malformed, or for another completion
│   └── ExpiredToken            401 a feedback token past its lifetime
├── NotFound                    404
│   ├── InteractionNotFound     404 no such completion, or another tenant's (one error: never reveal it exists)
│   └── FeedbackNotFound        404
├── IdempotencyConflict         409 an idempotency id used before with a different body
└── RecordBackpressure          503 the writer is full: refuse the request before serving it
"""

from __future__ import annotations


class RecordError(Exception):
    """Root of the record's errors."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(RecordError):
    pass


class InvalidRating(InvalidRequest):
    pass


class FieldTooLong(InvalidRequest):
    pass


class InvalidCursor(InvalidRequest):
    pass


class InvalidToken(RecordError):
    pass


class ExpiredToken(InvalidToken):
    pass


class NotFound(RecordError):
    pass


class InteractionNotFound(NotFound):
    pass


class FeedbackNotFound(NotFound):
    pass


class IdempotencyConflict(RecordError):
    pass


class RecordBackpressure(RecordError):
    """The writer holds `max_queue` rows it could neither write nor spill; retry after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
