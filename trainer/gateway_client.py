"""The gateway as the trainer sees it: the admin API (runs, adapters, golden sets, keys) and the OpenAI API, over HTTP.

The trainer never imports the gateway (DESIGN.md); this client is the whole contract. `transport` lets tests put an
`httpx.MockTransport` (a fake gateway) under both the admin calls and the OpenAI client.

    GatewayError          any refusal: status, code and message as the gateway sent them
    ├── RunInProgress     409 run_in_progress: another run of this tenant holds the lock
    ├── RunFinished       409 on a run update: the run is already final (e.g. marked failed after a lost lease)
    └── JobLost           409 job_lost on a fine-tuning job: this run no longer runs it (its lease ran out)
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import openai


class GatewayError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"gateway answered {status}{f' {code}' if code else ''}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RunInProgress(GatewayError):
    pass


class RunFinished(GatewayError):
    pass


class JobLost(GatewayError):
    pass


class GatewayClient:
    def __init__(
        self,
        url: str,
        admin_key: str,
        *,
        timeout_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._transport = transport
        self._http = httpx.Client(
            base_url=f"{self.url}/admin",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=timeout_s,
            transport=transport or httpx.HTTPTransport(retries=2),  # retries connection errors only
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Tenants

    def tenants(self) -> list[dict[str, Any]]:
        return self._call("GET", "/tenants")

    def tenant(self, tenant: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{tenant}")

    def create_tenant(self, tenant: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", "/tenants", json={"id": tenant, "settings": settings or {}})

    def update_settings(self, tenant: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Merged into the tenant's settings, one top-level key at a time."""
        return self._call("PATCH", f"/tenants/{tenant}", json={"settings": settings})

    # Keys

    def create_key(self, tenant: str, name: str, *, record: bool = True) -> tuple[str, str]:
        """A new API key: (key id, the key itself). `record=False`: its completions stay out of the record."""
        row = self._call("POST", f"/tenants/{tenant}/keys", json={"name": name, "record": record})
        return row["id"], row["key"]

    def revoke_key(self, tenant: str, key_id: str) -> None:
        self._call("DELETE", f"/tenants/{tenant}/keys/{key_id}")

    # Adapters

    def adapters(self, tenant: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/tenants/{tenant}/adapters")

    def adapter(self, tenant: str, alias: str) -> dict[str, Any] | None:
        """The alias with its production version (`production`: `support@3`, or None: the base model serves it)."""
        try:
            return self._call("GET", f"/tenants/{tenant}/adapters/{alias}")
        except GatewayError as error:
            if error.status == 404:
                return None
            raise

    def create_adapter(self, tenant: str, alias: str) -> dict[str, Any]:
        """An alias with no version yet (the base model serves it); an existing alias is returned as it is."""
        try:
            return self._call("POST", f"/tenants/{tenant}/adapters", json={"alias": alias})
        except GatewayError as error:
            if error.status == 409:
                return self._call("GET", f"/tenants/{tenant}/adapters/{alias}")
            raise

    def upload_version(self, tenant: str, alias: str, archive: Path, lineage: dict[str, Any]) -> dict[str, Any]:
        with archive.open("rb") as handle:
            return self._call(
                "POST",
                f"/tenants/{tenant}/adapters/{alias}/versions",
                files={"file": (archive.name, handle, "application/gzip")},
                data={"lineage": json.dumps(lineage)},
            )

    def download_version(self, tenant: str, alias: str, version: int, dest: Path) -> Path:
        """A version's PEFT files, unpacked under `dest`; returns the adapter's directory."""
        response = self._request("GET", f"/tenants/{tenant}/adapters/{alias}/versions/{version}/archive")
        _raise_for(response)
        return _unpack_adapter(response.content, dest, f"{alias}@{version}")

    def stage(self, tenant: str, alias: str, version: int) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant}/adapters/{alias}/versions/{version}/stage")

    def retire(self, tenant: str, alias: str, version: int) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant}/adapters/{alias}/versions/{version}/retire")

    def promote(self, tenant: str, alias: str, version: int, reason: str) -> dict[str, Any]:
        body = {"version": version, "reason": reason[:1000]}
        return self._call("POST", f"/tenants/{tenant}/adapters/{alias}/promote", json=body)

    # Canaries: the gateway serves a candidate to a share of the alias's users, then promotes it or sends it back

    def start_canary(self, tenant: str, alias: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant}/adapters/{alias}/canary", json=body)

    def canary(self, tenant: str, alias: str) -> dict[str, Any]:
        """The alias's running canary, else its last one (404 if it never had one)."""
        return self._call("GET", f"/tenants/{tenant}/adapters/{alias}/canary")

    # Golden sets

    def golden(self, tenant: str, alias: str) -> list[str]:
        """The alias's golden set as JSONL lines; none uploaded: an empty list."""
        response = self._request("GET", f"/tenants/{tenant}/adapters/{alias}/golden")
        if response.status_code == 404:
            return []
        _raise_for(response)
        return response.text.splitlines()

    def put_golden(self, tenant: str, alias: str, jsonl: bytes) -> int:
        headers = {"Content-Type": "application/x-ndjson"}
        return self._call("PUT", f"/tenants/{tenant}/adapters/{alias}/golden", content=jsonl, headers=headers)["items"]

    # Training runs (a running run is also the tenant's lock)

    def start_run(self, tenant: str, alias: str, trigger: str, runner: str) -> dict[str, Any]:
        body = {"adapter": alias, "trigger": trigger, "runner": runner}
        return self._call("POST", f"/tenants/{tenant}/training-runs", json=body)

    def update_run(self, tenant: str, run_id: str, **changes: Any) -> dict[str, Any]:
        """Every update is also a heartbeat. Raises RunFinished once the run is final."""
        return self._call("PATCH", f"/tenants/{tenant}/training-runs/{run_id}", json=changes)

    def runs(
        self, tenant: str, *, adapter: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in {"adapter": adapter, "status": status}.items() if v})
        return self._call("GET", f"/tenants/{tenant}/training-runs", params=params)

    def run(self, tenant: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{tenant}/training-runs/{run_id}")

    def review(self, tenant: str, run_id: str, verdict: str, reason: str = "") -> dict[str, Any]:
        """A person's verdict on a held run: `approve` promotes its candidate, `reject` retires it."""
        return self._call("POST", f"/tenants/{tenant}/training-runs/{run_id}/{verdict}", json={"reason": reason})

    # Fine-tuning jobs: the trainer's side of the queue (gateway/fine_tuning/admin_router.py)

    def claim_job(self, runner: str) -> dict[str, Any] | None:
        """The oldest queued job this trainer may run, now running and holding its tenant's lock; None: none now."""
        response = self._request("POST", "/fine-tuning/claim", json={"runner": runner})
        _raise_for(response)
        return None if response.status_code == 204 else response.json()

    def report_job(self, job: dict[str, Any], **report: Any) -> str:
        """Progress and events (also the heartbeat); returns the job's status (`cancelled`: stop)."""
        body = {"run_id": job["run_id"], **report}
        return self._call("POST", f"/fine-tuning/jobs/{job['id']}/report", json=body)["status"]

    def job_file(self, job: dict[str, Any], file_id: str, dest: Path) -> Path:
        """A training or validation file of the job, streamed to `dest`."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._http.stream("GET", f"/fine-tuning/jobs/{job['id']}/files/{file_id}") as response:
                if response.status_code >= 400:
                    response.read()
                _raise_for(response)
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as error:
            raise GatewayError(0, f"cannot reach the gateway at {self.url}: {error}") from error
        return dest

    def add_checkpoint(self, job: dict[str, Any], step: int, metrics: dict[str, Any], archive: Path) -> dict[str, Any]:
        with archive.open("rb") as handle:
            return self._call(
                "POST",
                f"/fine-tuning/jobs/{job['id']}/checkpoints",
                data={"run_id": job["run_id"], "step_number": str(step), "metrics": json.dumps(metrics)},
                files={"file": (archive.name, handle, "application/gzip")},
            )

    def download_checkpoint(self, job: dict[str, Any], checkpoint_id: str, dest: Path) -> Path:
        """The job's last checkpoint, unpacked under `dest`; returns the adapter's directory."""
        response = self._request("GET", f"/fine-tuning/jobs/{job['id']}/checkpoints/{checkpoint_id}/archive")
        _raise_for(response)
        return _unpack_adapter(response.content, dest, checkpoint_id)

    def complete_job(
        self, job: dict[str, Any], archive: Path, results: bytes, summary: dict[str, Any]
    ) -> dict[str, Any]:
        """Hand over the trained adapter and the metrics CSV: the gateway checks, registers and serves it."""
        with archive.open("rb") as handle:
            return self._call(
                "POST",
                f"/fine-tuning/jobs/{job['id']}/complete",
                data={"run_id": job["run_id"], "summary": json.dumps(summary)},
                files={
                    "adapter": (archive.name, handle, "application/gzip"),
                    "results": ("step_metrics.csv", results, "text/csv"),
                },
            )

    def end_job(
        self, job: dict[str, Any], status: str, *, error: dict[str, Any] | None = None, message: str = ""
    ) -> dict[str, Any]:
        """Stop working on the job: `failed` (OpenAI's error object), `cancelled`, or `interrupted` (queued again)."""
        body = {"run_id": job["run_id"], "status": status, "error": error, "message": message[:2000]}
        return self._call("POST", f"/fine-tuning/jobs/{job['id']}/end", json=body)

    def tenant_job(self, tenant: str, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{tenant}/fine-tuning/jobs/{job_id}")

    def promote_job(self, tenant: str, job_id: str, alias: str, *, promote: bool, reason: str = "") -> dict[str, Any]:
        """A succeeded job's model as the alias's next version: promoted, or (`promote=False`) staged only."""
        body = {"alias": alias, "promote": promote, "reason": reason[:1000]}
        return self._call("POST", f"/tenants/{tenant}/fine-tuning/jobs/{job_id}/promote", json=body)

    # The OpenAI API

    def openai(self, api_key: str, *, max_retries: int = 2, timeout_s: float = 120.0) -> openai.OpenAI:
        http_client = httpx.Client(transport=self._transport) if self._transport else None
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout_s,
            http_client=http_client,  # type: ignore[arg-type]  # openai also takes an httpx (not httpx2) client
        )

    # Plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise GatewayError(0, f"cannot reach the gateway at {self.url}: {error}") from error

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        _raise_for(response)
        return response.json()


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        message, code = str(error.get("message")), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text[:500], None
    if response.status_code == 409 and code == "run_in_progress":
        raise RunInProgress(409, message, code)
    if response.status_code == 409 and "training-runs/" in response.request.url.path:
        raise RunFinished(409, message, code)
    if response.status_code == 409 and code == "job_lost":
        raise JobLost(409, message, code)
    raise GatewayError(response.status_code, message, code)


def _unpack_adapter(archive: bytes, dest: Path, name: str) -> Path:
    """A .tar.gz of one PEFT adapter, unpacked under `dest`; returns the adapter's directory."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")  # no links, no absolute paths, nothing outside dest
    found = sorted(config.parent for config in dest.rglob("adapter_config.json"))
    if len(found) != 1:
        raise GatewayError(502, f"the archive of {name} does not hold one adapter")
    return found[0]
