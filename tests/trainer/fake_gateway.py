"""A fake gateway for the trainer's unit tests: the admin API and OpenAI API the trainer uses, in memory, behind an
`httpx.MockTransport`. It keeps the contract's rules (one running run per tenant, 409 after a final status, a key's
`record` flag) and lets a test make any call fail."""

from __future__ import annotations

import json
import re
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

BASE_NAME = "fake-base"
FINAL = ("promoted", "rejected", "skipped", "failed")


@dataclass
class FakeVersion:
    alias: str
    number: int
    state: str = "registered"
    lineage: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    archive: bytes | None = None  # what was uploaded; None for a version "registered by hand"

    @property
    def id(self) -> str:
        return f"{self.alias}@{self.number}"

    def out(self) -> dict[str, Any]:
        return {"id": self.id, "alias": self.alias, "version": self.number, "state": self.state,
                "sha256": f"sha-{self.id}", "lineage": self.lineage}  # fmt: skip


@dataclass
class FakeGateway:
    """State of the fake; `answer(model, messages)` gives the OpenAI API's reply text."""

    answer: Callable[[str, list[dict[str, Any]]], str] = lambda model, messages: "?"
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # production: version id or None
    versions: dict[tuple[str, str], list[FakeVersion]] = field(default_factory=dict)
    golden: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    canaries: list[dict[str, Any]] = field(default_factory=list)  # bodies of `POST .../canary`, with their id
    calls: list[str] = field(default_factory=list)  # "METHOD /path", in order
    completions: list[tuple[str, str]] = field(default_factory=list)  # (key, model) of each completion
    fail: dict[str, int] = field(default_factory=dict)  # regex on "METHOD /path" -> status to answer instead
    on_call: Callable[[str], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # Set-up helpers

    def add_tenant(self, tenant: str, settings: dict[str, Any] | None = None) -> None:
        self.tenants[tenant] = {"id": tenant, "name": tenant, "settings": settings or {}}

    def add_alias(self, tenant: str, alias: str, production: int | None = None) -> None:
        self.aliases[(tenant, alias)] = {"production": None}
        self.versions.setdefault((tenant, alias), [])
        if production is not None:
            for number in range(1, production + 1):
                self.versions[(tenant, alias)].append(FakeVersion(alias, number, "retired"))
            self.versions[(tenant, alias)][-1].state = "production"
            self.aliases[(tenant, alias)]["production"] = f"{alias}@{production}"

    def production(self, tenant: str, alias: str) -> str | None:
        return self.aliases[(tenant, alias)]["production"]

    def runs_of(self, tenant: str) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run["tenant_id"] == tenant]

    # The API

    def handle(self, request: httpx.Request) -> httpx.Response:
        call = f"{request.method} {request.url.path}"
        with self._lock:
            self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        for pattern, status in self.fail.items():
            if re.search(pattern, call):
                return _error(status, f"injected failure of {call}", "injected")
        try:
            with self._lock:
                return self._route(request)
        except KeyError as missing:
            return _error(404, f"not found: {missing}", "not_found")

    def _route(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.headers.get("content-type") == "application/json" else None
        if path.startswith("/v1/"):
            return self._openai(request, path, body)
        parts = path.removeprefix("/admin/").split("/")
        if parts == ["tenants"]:
            if method == "GET":
                return _json(list(self.tenants.values()))
            self.add_tenant(body["id"], body.get("settings"))
            return _json(self.tenants[body["id"]], 201)
        if parts == ["training-runs"]:
            status = request.url.params.get("status")
            return _json([_summary(r) for r in self.runs.values() if status in (None, r["status"])])
        tenant = parts[1]
        if tenant not in self.tenants:
            return _error(404, f"No tenant `{tenant}`.", "not_found")
        rest = parts[2:]
        if not rest:
            if method == "PATCH":
                self.tenants[tenant]["settings"] = {**self.tenants[tenant]["settings"], **body["settings"]}
            return _json(self.tenants[tenant])
        if rest[0] == "keys":
            return self._keys(tenant, method, rest, body)
        if rest[0] == "adapters":
            return self._adapters(request, tenant, method, rest, body)
        if rest[0] == "training-runs":
            return self._runs(request, tenant, method, rest, body)
        return _error(404, "no route", "not_found")

    def _keys(self, tenant: str, method: str, rest: list[str], body: Any) -> httpx.Response:
        if method == "POST":
            key_id = f"key_{len(self.keys) + 1}"
            self.keys[key_id] = {
                "id": key_id, "tenant": tenant, "name": body.get("name", ""), "record": body.get("record", True),
                "key": f"sk-{key_id}", "revoked": False,
            }  # fmt: skip
            return _json(self.keys[key_id], 201)
        self.keys[rest[1]]["revoked"] = True
        return _json(self.keys[rest[1]])

    def _adapters(self, request: httpx.Request, tenant: str, method: str, rest: list[str], body: Any):
        if len(rest) == 1:
            if method == "POST":
                if (tenant, body["alias"]) in self.aliases:
                    return _error(409, "exists", "conflict")
                self.add_alias(tenant, body["alias"])
                return _json(self._alias_out(tenant, body["alias"]), 201)
            return _json([self._alias_out(t, a) for (t, a) in self.aliases if t == tenant])
        alias = rest[1]
        if (tenant, alias) not in self.aliases:
            return _error(404, f"No adapter `{alias}`.", "not_found")
        versions = self.versions[(tenant, alias)]
        if len(rest) == 2:
            return _json(self._alias_out(tenant, alias))
        if rest[2] == "golden":
            if method == "PUT":
                self.golden[(tenant, alias)] = request.content.decode()
                return _json({"items": len(request.content.decode().splitlines())})
            if (tenant, alias) not in self.golden:
                return _error(404, "no golden set", "not_found")
            return httpx.Response(200, text=self.golden[(tenant, alias)])
        if rest[2] == "versions" and len(rest) == 3:
            return self._register(request, tenant, alias, versions)
        if rest[2] == "versions" and rest[4] == "archive":
            version = versions[int(rest[3]) - 1]
            if version.archive is None:
                return _error(404, "no files", "not_found")
            return httpx.Response(200, content=version.archive, headers={"content-type": "application/gzip"})
        if rest[2] == "versions":
            version = versions[int(rest[3]) - 1]
            version.state = {"stage": "staged", "retire": "retired"}[rest[4]]
            return _json(version.out())
        if rest[2] == "canary" and method == "POST":
            canary = {"id": f"can_{len(self.canaries) + 1}", "tenant": tenant, "alias": alias, **body}
            self.canaries.append(canary)
            return _json({**canary, "status": "running"}, 201)
        if rest[2] == "promote":
            version = versions[body["version"] - 1]
            for other in versions:
                if other.state == "production":
                    other.state = "retired"
            version.state = "production"
            version.lineage = {**version.lineage, "promotion_reason": body.get("reason", "")}
            self.aliases[(tenant, alias)]["production"] = version.id
            return _json(version.out())
        return _error(404, "no route", "not_found")

    def _register(self, request: httpx.Request, tenant: str, alias: str, versions: list[FakeVersion]):
        content_type = request.headers["content-type"]
        boundary = content_type.split("boundary=")[1].encode()
        fields = _multipart(request.content, boundary)
        import io

        with tarfile.open(fileobj=io.BytesIO(fields["file"]), mode="r:gz") as tar:
            files = sorted(member.name for member in tar.getmembers() if member.isfile())
        version = FakeVersion(
            alias, len(versions) + 1, lineage=json.loads(fields["lineage"]), files=files, archive=fields["file"]
        )
        versions.append(version)
        return _json(version.out(), 201)

    def _alias_out(self, tenant: str, alias: str) -> dict[str, Any]:
        entry = self.aliases[(tenant, alias)]
        return {"alias": alias, "production": entry["production"], "options": entry.get("options", {}),
                "versions": [v.out() for v in self.versions[(tenant, alias)]]}  # fmt: skip

    def _runs(self, request: httpx.Request, tenant: str, method: str, rest: list[str], body: Any):
        if len(rest) == 1 and method == "POST":
            holder = next((r for r in self.runs_of(tenant) if r["status"] == "running"), None)
            if holder is not None:
                return _error(409, f"Tenant `{tenant}` is already training ({holder['id']}).", "run_in_progress")
            run_id = f"run_{len(self.runs) + 1:04d}"
            now = datetime.now(UTC).isoformat()
            self.runs[run_id] = {"id": run_id, "tenant_id": tenant, "adapter": body["adapter"],
                                 "trigger": body["trigger"], "runner": body["runner"], "status": "running",
                                 "stage": "starting", "progress": {}, "candidate": None, "reason": "",
                                 "created_at": now, "heartbeat_at": now, "finished_at": None, "report": {},
                                 "report_markdown": "", "updates": 0}  # fmt: skip
            return _json(self.runs[run_id], 201)
        if len(rest) == 1:
            adapter = request.url.params.get("adapter")
            found = [r for r in self.runs_of(tenant) if adapter in (None, r["adapter"])]
            return _json([_summary(r) for r in sorted(found, key=lambda r: r["created_at"], reverse=True)])
        run = self.runs[rest[1]]
        if len(rest) == 3 and method == "POST":  # a person's verdict on a held run: approve | reject
            if run["status"] != "held":
                return _error(409, f"Run {run['id']} is {run['status']}, not held for review.", "run_not_held")
            run["status"] = "promoted" if rest[2] == "approve" else "rejected"
            run["reason"] = f"{rest[2]}d by a person: {body.get('reason', '')}"
            return _json(_summary(run))
        if method == "GET":
            return _json(run)
        if run["status"] in FINAL:
            return _error(409, f"Run {run['id']} is already {run['status']}: {run['reason']}", "run_finished")
        run.update(body)
        run["updates"] += 1
        run["heartbeat_at"] = datetime.now(UTC).isoformat()
        return _json(_summary(run))

    def _openai(self, request: httpx.Request, path: str, body: Any) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        owner = next((k for k in self.keys.values() if k["key"] == key and not k["revoked"]), None)
        if owner is None:
            return _error(401, "bad key", "invalid_api_key")
        if path == "/v1/models":
            return _json({"object": "list", "data": [{"id": BASE_NAME, "object": "model", "created": 0,
                                                      "owned_by": "loraflow"}]})  # fmt: skip
        with_lock_released = self.answer(body["model"], body["messages"])
        self.completions.append((owner["id"], body["model"]))
        return _json({"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": with_lock_released}}]})  # fmt: skip


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("report", "report_markdown", "updates")}


def _json(value: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=value)


def _error(status: int, message: str, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x", "param": None, "code": code}})


def _multipart(content: bytes, boundary: bytes) -> dict[str, bytes]:
    fields = {}
    for part in content.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name.group(1).decode()] = value.removesuffix(b"\r\n")
    return fields
