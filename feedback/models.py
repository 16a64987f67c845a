"""Tables of the record: `interactions` (one per completion served) and `feedback` (the ratings they get)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, DateTime, Double, Index, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The same convention as the registry's tables (gateway/store/models.py), copied: feedback/ never imports gateway/.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Longest values of the key columns. The gateway should refuse longer ones at request time (e.g. a 300-character
# OpenAI `user`); the writer cuts descriptive fields to fit rather than fail a whole batch.
MAX_ID_CHARS = 200
MAX_TENANT_CHARS = 64
MAX_END_USER_CHARS = 256
MAX_NAME_CHARS = 200


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class InteractionRow(Base):
    """One completion served. `id` is the completion id the client received (`chatcmpl-...`, `cmpl-...`)."""

    __tablename__ = "interactions"
    __table_args__ = (
        # Listing, export and retention all scan one tenant by time; forgetting a user scans by end user.
        Index("ix_interactions_tenant_created", "tenant_id", "created_at"),
        Index("ix_interactions_tenant_end_user", "tenant_id", "end_user"),
        Index("ix_interactions_adapter_version", "adapter_version"),
        Index("ix_interactions_tenant_alias", "tenant_id", "alias"),
    )

    id: Mapped[str] = mapped_column(String(MAX_ID_CHARS), primary_key=True)
    # No foreign keys to the registry: those tables belong to another part's metadata, and a tenant's record
    # must outlive, and be purged independently of, its keys and adapters.
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    key_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    model_requested: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    adapter_version: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS))  # `support@2`; NULL: base model
    endpoint: Mapped[str] = mapped_column(String(16))  # chat | completion
    # As sent upstream, retrieved context included: {"messages": [...]} or {"prompt": "..."}.
    request: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]  # sampling parameters (temperature, max_tokens, ...)
    response_text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Double)
    ttft_ms: Mapped[float | None] = mapped_column(Double)
    end_user: Mapped[str | None] = mapped_column(String(MAX_END_USER_CHARS))  # the OpenAI `user` field
    # `metadata` is taken by the declarative base, so the attribute has another name than the column.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    retrieved: Mapped[list[Any]]  # chunks injected into the request (ids, sources, scores)
    stream: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(24))  # completed | client_disconnected | upstream_error
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # The tenant's alias that served it (`support`), whatever name the request used (a key's model map) and even
    # while the base model serves the alias; NULL when the base model was asked for by name.
    alias: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS))


class FeedbackRow(Base):
    """One end user's rating of one interaction; a new rating from the same user replaces it (same row)."""

    __tablename__ = "feedback"
    __table_args__ = (
        # "No user" is stored as '' rather than NULL: NULLs never collide in a unique constraint, and all
        # anonymous ratings of a completion are meant to be one rating.
        UniqueConstraint("interaction_id", "end_user", name="uq_feedback_interaction_end_user"),
        UniqueConstraint("tenant_id", "idempotency_id", name="uq_feedback_tenant_idempotency"),
        Index("ix_feedback_tenant_created", "tenant_id", "created_at"),
        Index("ix_feedback_adapter_version", "adapter_version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # fb_<hex>
    idempotency_id: Mapped[str | None] = mapped_column(String(MAX_ID_CHARS))
    interaction_id: Mapped[str] = mapped_column(String(MAX_ID_CHARS))
    tenant_id: Mapped[str] = mapped_column(String(MAX_TENANT_CHARS))
    # Copied from the interaction when the rating is stored, so stats and listings need no join.
    adapter_version: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS))
    rating: Mapped[int] = mapped_column(Integer)  # +1 up, -1 down
    comment: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    end_user: Mapped[str] = mapped_column(String(MAX_END_USER_CHARS), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# The tables themselves, for Core queries (the record does not use ORM sessions).
interactions = cast(Table, InteractionRow.__table__)
feedback = cast(Table, FeedbackRow.__table__)
