"""A tenant's files in the store: their rows, listing with OpenAI's cursor, and the rule on deleting one a job uses.

Another tenant's file is "not found", whatever its id (never "forbidden").
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound
from gateway.fine_tuning.file_store import Stored
from gateway.fine_tuning.protocol import FileObject
from gateway.store.models import FineTuningJob, StoredFile

PURPOSES = ("fine-tune", "fine-tune-results")
ACTIVE = ("validating_files", "queued", "running")  # a job in these states still reads its files


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def add_file(session: Session, file_id: str, tenant_id: str, purpose: str, filename: str, stored: Stored) -> StoredFile:
    row = StoredFile(
        id=file_id,
        tenant_id=tenant_id,
        purpose=purpose,
        filename=filename,
        bytes=stored.size,
        sha256=stored.sha256,
        location=stored.location,
        status="processed",
    )
    session.add(row)
    session.commit()
    return row


def get_file(session: Session, tenant_id: str, file_id: str, param: str = "file_id") -> StoredFile:
    row = session.get(StoredFile, file_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"No such File object: {file_id}", param=param)
    return row


def list_files(
    session: Session, tenant_id: str, purpose: str | None, limit: int, after: str | None, order: Literal["asc", "desc"]
) -> tuple[list[StoredFile], bool]:
    """A page of the tenant's files by `created_at` (then id), after the file `after`; and whether more follow."""
    query = select(StoredFile).where(StoredFile.tenant_id == tenant_id)
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    if after:
        cursor = get_file(session, tenant_id, after, param="after")
        if order == "desc":
            query = query.where(
                or_(
                    StoredFile.created_at < cursor.created_at,
                    (StoredFile.created_at == cursor.created_at) & (StoredFile.id < cursor.id),
                )
            )
        else:
            query = query.where(
                or_(
                    StoredFile.created_at > cursor.created_at,
                    (StoredFile.created_at == cursor.created_at) & (StoredFile.id > cursor.id),
                )
            )
    if order == "desc":
        query = query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
    else:
        query = query.order_by(StoredFile.created_at, StoredFile.id)
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def delete_file(session: Session, tenant_id: str, file_id: str) -> str:
    """Delete the row; returns where its bytes are, for the caller to remove. A file that a job still reads
    (validating, queued or running) is refused: the job would otherwise fail for a reason nobody asked for."""
    row = get_file(session, tenant_id, file_id)
    users = session.scalars(
        select(FineTuningJob.id).where(
            FineTuningJob.tenant_id == tenant_id,
            FineTuningJob.status.in_(ACTIVE),
            or_(FineTuningJob.training_file == file_id, FineTuningJob.validation_file == file_id),
        )
    ).all()
    if users:
        raise Conflict(
            f"The file {file_id} is used by the fine-tuning job {users[0]}, which has not finished; cancel the job "
            "or wait for it to end, then delete the file.",
            param="file_id",
            code="file_in_use",
        )
    location = row.location
    session.delete(row)
    session.commit()
    return location


def file_object(row: StoredFile) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=unix(row.created_at),
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
    )


def unix(moment: datetime) -> int:
    """Unix seconds; SQLite gives back naive datetimes, which are UTC here."""
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
