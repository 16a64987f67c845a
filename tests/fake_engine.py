"""A fake vLLM for fast gateway unit tests: the same routes and response shapes, deterministic answers.

Its answer names the model it was asked for, so a test can see which adapter served a request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


class FakeEngine:
    def __init__(self, base_model: str = "tiny-random") -> None:
        self.base_model = base_model
        self.adapters: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.refuse_paths: set[str] = set()  # load_lora_adapter fails for these paths
        self.healthy = True
        self.cut_streams = False  # end streams without [DONE], as an engine that died mid-stream
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse({}, status_code=200 if self.healthy else 503)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            data = [{"id": self.base_model, "object": "model", "parent": None}]
            data += [
                {"id": name, "object": "model", "parent": self.base_model, "root": p}
                for name, p in self.adapters.items()
            ]
            return {"object": "list", "data": data}

        @app.post("/v1/load_lora_adapter")
        async def load(request: Request) -> JSONResponse:
            body = await request.json()
            if body["lora_path"] in self.refuse_paths:
                return _error(400, "Loading lora failed: bad weights")
            if body["lora_name"] in self.adapters:
                return _error(400, f"The lora adapter '{body['lora_name']}' has already been loaded.")
            self.adapters[body["lora_name"]] = body["lora_path"]
            return JSONResponse("Success")

        @app.post("/v1/unload_lora_adapter")
        async def unload(request: Request) -> JSONResponse:
            body = await request.json()
            if self.adapters.pop(body["lora_name"], None) is None:
                return _error(404, "not found")
            return JSONResponse("Success")

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            return await self._complete(request, chat=True)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Any:
            return await self._complete(request, chat=False)

        return app

    async def _complete(self, request: Request, chat: bool) -> Any:
        body = await request.json()
        self.requests.append(body)
        model = body["model"]
        if model != self.base_model and model not in self.adapters:
            return _error(404, f"The model `{model}` does not exist.")
        if body.get("temperature", 0) > 2:
            return _error(400, "temperature must be at most 2", param="temperature")
        answer = f"answer from {model}"
        rid = ("chatcmpl-" if chat else "cmpl-") + "upstream123"
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        if not body.get("stream"):
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": answer, "finish_reason": "stop"}
            )
            obj = "chat.completion" if chat else "text_completion"
            return {
                "id": rid,
                "object": obj,
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            }

        def chunk(payload: dict[str, Any]) -> bytes:
            base = {
                "id": rid,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": 1,
                "model": model,
            }
            return b"data: " + json.dumps({**base, **payload}, separators=(",", ":")).encode() + b"\n\n"

        def events():
            if chat:
                yield chunk(
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
                )
            for word in answer.split(" "):
                piece = {"index": 0, "delta": {"content": word + " "}} if chat else {"index": 0, "text": word + " "}
                yield chunk({"choices": [{**piece, "finish_reason": None}]})
            end = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
            yield chunk({"choices": [{**end, "finish_reason": "stop"}]})
            if self.cut_streams:
                return
            if (body.get("stream_options") or {}).get("include_usage"):
                yield chunk({"choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "BadRequestError", "param": param, "code": status}}, status
    )
