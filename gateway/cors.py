"""CORS for browser widgets: the configured origins may call the gateway and read a response's feedback token."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.recorder import FEEDBACK_TOKEN_HEADER
from gateway.settings import Settings


def add_cors(app: FastAPI, settings: Settings) -> None:
    """Let the configured origins call the gateway from a browser, and read the feedback token of a response."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
        # No cookies: every call carries its bearer (a key, or a feedback token), so credentials stay off.
        allow_credentials=False,
        expose_headers=[FEEDBACK_TOKEN_HEADER, "x-request-id", "x-loraflow-model", "retry-after"],
    )
