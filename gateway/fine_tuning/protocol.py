"""OpenAI wire types of the files and fine-tuning APIs, fields in the order of OpenAI's published description
(`openai-openapi.yml`: OpenAIFile, CreateFineTuningJobRequest, FineTuningJob, FineTuningJobEvent,
FineTuningJobCheckpoint). Requests accept fields we do not know; project extensions are in the marked block.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator


def _auto_or(kind: type, low: float, high: float | None, *, above: bool = False) -> PlainValidator:
    """ "auto", or a number of `kind` from `low` (excluded when `above`) to `high`: one check, so that an error
    names the field itself (a union would add its branch to the error's location)."""

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if kind is int and not isinstance(number, int):
            number = None
        if number is None or number < low or (above and number == low) or (high is not None and number > high):
            bounds = f"{'above' if above else 'at least'} {low}" + (f" and at most {high}" if high is not None else "")
            raise ValueError(f'must be "auto" or a {"whole " if kind is int else ""}number {bounds}')
        return kind(number)

    return PlainValidator(check, json_schema_input_type=Literal["auto"] | kind)


Epochs = Annotated[Literal["auto"] | int, _auto_or(int, 1, 50)]
BatchSize = Annotated[Literal["auto"] | int, _auto_or(int, 1, 256)]
Multiplier = Annotated[Literal["auto"] | float, _auto_or(float, 0, None, above=True)]
Beta = Annotated[Literal["auto"] | float, _auto_or(float, 0, 2, above=True)]


class _Passthrough(BaseModel):
    model_config = ConfigDict(extra="allow")


# Files.


class FileObject(BaseModel):
    id: str
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    object: Literal["file"] = "file"
    purpose: Literal["fine-tune", "fine-tune-results"]
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# Fine-tuning jobs: the request.


class Hyperparameters(_Passthrough):
    """The older top-level `hyperparameters`, and a supervised method's."""

    batch_size: BatchSize = "auto"
    learning_rate_multiplier: Multiplier = "auto"
    n_epochs: Epochs = "auto"


class DPOHyperparameters(Hyperparameters):
    beta: Beta = "auto"


class SupervisedMethod(_Passthrough):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DPOMethod(_Passthrough):
    hyperparameters: DPOHyperparameters = Field(default_factory=DPOHyperparameters)


class Method(_Passthrough):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DPOMethod | None = None
    reinforcement: dict[str, Any] | None = None


class CreateFineTuningJobRequest(_Passthrough):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    hyperparameters: Hyperparameters | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = None
    seed: int | None = Field(None, ge=0, le=2_147_483_647)
    method: Method | None = None
    metadata: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _openai_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
        if value is not None:
            if len(value) > 16:
                raise ValueError("metadata holds at most 16 key-value pairs")
            if any(len(key) > 64 or len(item) > 512 for key, item in value.items()):
                raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return value


# Fine-tuning jobs: what the API returns.


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobHyperparameters(BaseModel):
    batch_size: Literal["auto"] | int | None = "auto"
    learning_rate_multiplier: Literal["auto"] | float = "auto"
    n_epochs: Literal["auto"] | int = "auto"


class FineTuningJob(BaseModel):
    id: str
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: JobHyperparameters
    model: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    organization_id: str
    result_files: list[str]
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    integrations: list[dict[str, Any]] | None = None
    seed: int
    estimated_finish: int | None = None
    method: dict[str, Any]
    metadata: dict[str, str] | None = None


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class FineTuningJobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    step_number: int
    metrics: CheckpointMetrics
    fine_tuning_job_id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    first_id: str | None
    last_id: str | None
    has_more: bool
