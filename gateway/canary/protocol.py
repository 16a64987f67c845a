"""Wire types of the canary API (admin key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.canary.decision import CanaryPolicy
from gateway.canary.loop import Look
from gateway.store.models import Canary


class CanaryStart(BaseModel):
    """Serve `version` to a share of the alias's users until the sequential test, or the budget, decides."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The candidate: a registered or staged version of the alias.")
    share: float = Field(0.1, gt=0, lt=1, description="Share of the alias's end users (or keys) it serves.")
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Per direction: the chance of promoting a candidate that is not better."
    )
    max_ratings: int = Field(5000, ge=1, description="Ratings counted (both arms) before the budget decides.")
    max_duration_s: float = Field(7 * 24 * 3600.0, gt=0, description="Seconds before the budget decides.")
    on_budget: Literal["promote", "rollback"] = Field("rollback", description="What an undecided canary does then.")
    ratings_per_user: int = Field(1, ge=1, description="Each user's first ratings that count (1: the test is exact).")
    run_id: str | None = Field(None, max_length=40, description="The training run that asks; it ends with the canary.")

    def policy(self) -> CanaryPolicy:
        return CanaryPolicy(
            share=self.share,
            alpha=self.alpha,
            max_ratings=self.max_ratings,
            max_duration_s=self.max_duration_s,
            on_budget=self.on_budget,
            ratings_per_user=self.ratings_per_user,
        )


class CanaryStop(BaseModel):
    """A person ends a running canary now, with the decision they take."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["promote", "rollback"]
    reason: str = Field("", max_length=1000)


class CanaryOut(BaseModel):
    id: str
    alias: str
    status: str = Field(description="running, deciding, promoted, rolled_back or cancelled.")
    candidate: str = Field(description="e.g. `support@4`.")
    control: str | None = Field(description="Production when it started, e.g. `support@3`; None: the base model.")
    share: float
    policy: dict[str, Any]
    outcome: str = Field(description="What the evidence says now (continue, promote, rollback), or what was done.")
    reason: str
    evidence: dict[str, Any] = Field(description="Counts and 👍 rates per arm, the log e-values and their threshold.")
    run_id: str | None
    started_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, row: Canary, look: Look) -> CanaryOut:
        evidence = look.evidence()
        reason = row.reason or (look.decision.reason if look.decision is not None else "")
        return cls(
            id=row.id,
            alias=look.alias,
            status=row.status,
            candidate=look.candidate,
            control=look.control,
            share=row.share,
            policy=row.policy,
            outcome=str(evidence.get("outcome", "")),
            reason=reason,
            evidence=evidence,
            run_id=row.run_id,
            started_at=row.started_at,
            decided_at=row.decided_at,
        )
