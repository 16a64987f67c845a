"""The console's settings (`LORAFLOW_CONSOLE__*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ConsoleSettings(BaseModel):
    enabled: bool = Field(True, description="Serve the console at /console.")
    session_ttl_s: float = Field(
        8 * 3600.0, gt=0, description="A console session ends this long after sign-in, whatever happens meanwhile."
    )
