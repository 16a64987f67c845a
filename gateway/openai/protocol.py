"""OpenAI wire types for the requests the gateway checks, fields in the order of OpenAI's API reference.

Only what the gateway must understand is typed; every other field is accepted and passed on to the engine
unchanged (clients send fields we do not know yet). Project extensions are in the marked blocks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Passthrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Passthrough):
    include_usage: bool | None = None


class ChatMessage(_Passthrough):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class RetrievalOptions(BaseModel):
    """Extension: ground this request in the tenant's documents (gateway/grounding.py). Fields given override the
    alias's default options one by one; `"retrieval": null` turns an alias's default off for the request."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(4, ge=1, le=50)
    min_score: float | None = Field(None, ge=-1.0, le=1.0)


class _Sampling(_Passthrough):
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    n: int | None = Field(None, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = Field(None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str = ""
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    top_logprobs: int | None = Field(None, ge=0, le=20)

    # --- loraflow extensions ---
    retrieval: RetrievalOptions | None = None


class CompletionRequest(_Sampling):
    model: str = ""
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None

    # --- loraflow extensions ---
    retrieval: RetrievalOptions | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    # --- loraflow extensions ---
    parent: str | None = None  # the alias a pinned version belongs to, the base model for an alias
    root: str | None = None  # an alias: what serves it now (`support@2`, or the base model), as vLLM's `root`


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
