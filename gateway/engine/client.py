"""One vLLM server's health and runtime-LoRA routes (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`)."""

from __future__ import annotations

import httpx


class EngineRefused(Exception):
    """The engine answered a management call with an error (e.g. it could not load an adapter's weights)."""


class EngineClient:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self._http = http

    async def healthy(self, timeout_s: float = 5.0) -> bool:
        try:
            response = await self._http.get(f"{self.url}/health", timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def loaded_adapters(self, timeout_s: float = 5.0) -> set[str]:
        """Names of the LoRA adapters the engine holds now (an engine that restarted holds none)."""
        response = await self._http.get(f"{self.url}/v1/models", timeout=timeout_s)
        response.raise_for_status()
        return {model["id"] for model in response.json()["data"] if model.get("parent")}

    async def load(self, name: str, path: str, timeout_s: float = 120.0) -> None:
        response = await self._http.post(
            f"{self.url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}, timeout=timeout_s
        )
        if response.status_code != 200 and "already been loaded" not in response.text:
            raise EngineRefused(_message(response))

    async def unload(self, name: str, timeout_s: float = 30.0) -> None:
        response = await self._http.post(
            f"{self.url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=timeout_s
        )
        if response.status_code != 200 and response.status_code not in (400, 404):
            raise EngineRefused(_message(response))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]
