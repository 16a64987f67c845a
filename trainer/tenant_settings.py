"""The tenant settings the trainer owns, read from the tenant's free-form `settings` JSON in the admin API.

    PATCH /admin/tenants/acme  {"settings": {
        "training":   {"epochs": 5, "learning_rate": 0.002},                  # TrainingConfig fields
        "schedule":   {"cron": "0 3 * * *", "timezone": "Europe/Paris", "adapters": ["support"]},
        "evaluation": {"scorer": "json_equal", "held_out_fraction": 0.2, "gate": {"min_items": 20},
                       "regression": {"min_users": 3}},
        "signals":    {"concentration": {"max_share": 0.8}},                  # checks of the new ratings
        "canary":     {"enabled": true, "share": 0.1},                          # prove a passing candidate online
        "min_new_ratings": 20}}

Each key is optional and has defaults (nightly at 03:00 UTC, every alias, exact match, 20% held out, every signal
checked, no canary). The gateway merges settings one top-level key at a time, so a PATCH of `training` replaces the
whole `training` object. An alias's `canary` option (PATCH /admin/tenants/acme/adapters/support) overrides the
tenant's `canary` setting field by field.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainer.config import TrainingConfig
from trainer.gate import GatePolicy

KEYS = ("training", "schedule", "evaluation", "signals", "canary", "min_new_ratings")
# Held-out items expect an answer from the record (a thumbs-up response or a correction): these scorers take one.
HELD_OUT_SCORERS = ("exact", "contains", "json_equal", "judge")


class SettingsError(ValueError):
    """A tenant's trainer settings cannot be used; the message names the setting and what is wrong."""


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="False: no scheduled runs (`loraflow train` still works).")
    cron: str = Field(default="0 3 * * *", description="When to run, as a 5-field crontab line, in `timezone`.")
    timezone: str = Field(default="UTC", description="IANA time zone of the cron line, e.g. `Europe/Paris`.")
    adapters: list[str] | None = Field(
        default=None, description="The aliases to retrain; None: every alias the tenant has."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as error:
            raise ValueError(f"bad cron line {value!r}: {error}") from None
        return value


class JudgeSettings(BaseModel):
    """An OpenAI-compatible judge model for the `judge` scorer. The key is read from the trainer's environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str
    api_key_env: str | None = Field(
        default=None, description="Name of the trainer's environment variable that holds the judge's API key."
    )
    scale: Literal["binary", "ten"] = "binary"


# How the run checks the ratings it learns from (trainer/rating_signals.py) and what users agreed on
# (trainer/regression_set.py): here, with the other settings, so the gateway checks them without loading those.


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContradictionPolicy(_Policy):
    max_share: float = Field(
        0.25, gt=0, le=1, description="Fires when at least this share of the comparable new ratings contradict."
    )
    min_count: int = Field(5, ge=1, description="... and at least this many contradict.")


class ConcentrationPolicy(_Policy):
    top_raters: int = Field(3, ge=1, description="How many of the most active raters are summed.")
    max_share: float = Field(
        0.6, gt=0, le=1, description="Fires when those raters gave at least this share of the decisive new ratings."
    )
    min_ratings: int = Field(20, ge=1, description="Fewer decisive new ratings than this are not judged.")


class DriftPolicy(_Policy):
    max_shift: float = Field(0.3, gt=0, le=1, description="Fires when the 👍 rate moves by at least this much ...")
    min_z: float = Field(3.0, ge=0, description="... and by at least this many standard errors.")
    min_ratings: int = Field(10, ge=1, description="Ratings needed on each side (before, now) to judge.")


class SignalPolicy(_Policy):
    """The tenant's `signals` setting."""

    enabled: bool = Field(True, description="False: the ratings are not checked, and nothing is held for them.")
    contradictions: ContradictionPolicy = Field(default_factory=ContradictionPolicy)
    concentration: ConcentrationPolicy = Field(default_factory=ConcentrationPolicy)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)


class RegressionPolicy(BaseModel):
    """The tenant's `evaluation.regression` setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_users: int = Field(3, ge=1, description="Distinct users who approved the same prompt and answer.")
    min_span_s: float = Field(
        3600.0, ge=0, description="Seconds between the first and the last of those approvals (agreed over time)."
    )
    max_items: int = Field(100, ge=1, description="At most this many items, the most approved first.")


class Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scorer: str = Field(
        default="exact",
        description="Scorer of held-out items, whose expected output is an answer from the record: `exact`, "
        "`contains`, `json_equal` or `judge` (with `judge` set). Golden items name their own scorer.",
    )
    held_out_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rated interactions kept out of training, by a hash of the id."
    )
    max_held_out: int = Field(default=200, ge=1, description="At most this many held-out items (the newest).")
    max_tokens: int = Field(default=256, ge=1, description="Longest answer generated per item.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight to the gateway while scoring.")
    judge: JudgeSettings | None = None
    gate: GatePolicy = Field(default_factory=GatePolicy)
    regression: RegressionPolicy = Field(default_factory=RegressionPolicy)

    @model_validator(mode="after")
    def _known_scorer(self) -> Evaluation:
        if self.scorer == "judge" and self.judge is None:
            raise ValueError("scorer 'judge' needs evaluation.judge (base_url, model)")
        if self.scorer not in HELD_OUT_SCORERS:
            raise ValueError(f"scorer {self.scorer!r} cannot score held-out items; use one of {HELD_OUT_SCORERS}")
        return self


class CanarySettings(BaseModel):
    """Whether a candidate the gate passes goes to a canary (the gateway serves it to a share of the alias's users
    and promotes or sends it back by their 👍 rates) instead of straight to production; and the canary's rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="True: canary first; False: promote at once.")
    share: float = Field(default=0.1, gt=0, lt=1, description="Share of the alias's users (or keys) it serves.")
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Per direction: the chance of promoting a candidate that is not better."
    )
    max_ratings: int = Field(default=5000, ge=1, description="Ratings counted (both arms) before the budget decides.")
    max_hours: float = Field(default=168.0, gt=0, description="Hours before the budget decides.")
    on_budget: Literal["promote", "rollback"] = Field(
        default="rollback", description="What an undecided canary does when its budget is spent."
    )
    ratings_per_user: int = Field(default=1, ge=1, description="A user's first ratings that count (1: exact test).")

    def request(self, version: int, run_id: str) -> dict[str, Any]:
        """The body of the gateway's `POST .../canary`."""
        return {
            "version": version,
            "share": self.share,
            "alpha": self.alpha,
            "max_ratings": self.max_ratings,
            "max_duration_s": self.max_hours * 3600,
            "on_budget": self.on_budget,
            "ratings_per_user": self.ratings_per_user,
            "run_id": run_id,
        }

    def overridden(self, options: dict[str, Any] | None) -> CanarySettings:
        """With an alias's `canary` option over it, field by field."""
        if not options:
            return self
        try:
            return CanarySettings.model_validate({**self.model_dump(), **options})
        except ValidationError as error:
            raise SettingsError(f"the alias's canary option is rejected: {error.errors()[0]['msg']}") from None


class TenantTrainingSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    training: TrainingConfig = Field(default_factory=TrainingConfig)
    schedule: Schedule = Field(default_factory=Schedule)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    signals: SignalPolicy = Field(default_factory=SignalPolicy)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    min_new_ratings: int = Field(
        default=20, ge=0, description="Skip a run when fewer ratings than this came in since the last finished run."
    )

    @model_validator(mode="after")
    def _pairs_come_from_jobs(self) -> TenantTrainingSettings:
        if self.training.method == "dpo":
            raise ValueError("training.method 'dpo' needs preference pairs, which fine-tuning jobs bring; the "
                             "record's ratings train with 'sft' or 'kto'")  # fmt: skip
        return self

    @classmethod
    def of(cls, settings: dict[str, Any] | None) -> TenantTrainingSettings:
        """The trainer's part of a tenant's settings; other keys (retention, ...) belong to other parts."""
        mine = {key: value for key, value in (settings or {}).items() if key in KEYS and value is not None}
        try:
            return cls.model_validate(mine)
        except ValidationError as error:
            problems = [
                f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
                for problem in error.errors()
            ]
            raise SettingsError("tenant settings rejected: " + "; ".join(problems)) from None


# The gateway checks a tenant's settings with these before storing them (entry point `loraflow.tenant_settings`,
# gateway/settings_owners.py): one set of rules, refused at once rather than at the next nightly run.


def check(settings: dict[str, Any]) -> None:
    """Raise SettingsError (a ValueError) naming every setting the trainer could not use."""
    TenantTrainingSettings.of(settings)


def schema() -> dict[str, Any]:
    """JSON Schema of the trainer's part of a tenant's settings, with each field's help text and default."""
    return TenantTrainingSettings.model_json_schema()
