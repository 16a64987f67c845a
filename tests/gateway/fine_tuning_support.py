"""Helpers of the fine-tuning API tests: a gateway on the fake engine, JSONL files in OpenAI's formats, and a fake
trainer that works the job queue through the admin API as trainer/fine_tuning.py does."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.fine_tuning.settings import FineTuningSettings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import BASE, Env, fake_adapter, make_settings, tar_gz

QUICK = {"expire_interval_s": 0.05, "min_examples": 2}


@contextlib.contextmanager
def open_env(tmp_path: Path, fine_tuning: dict[str, Any] | None = None, **overrides: Any) -> Iterator[Env]:
    engine = FakeEngine(BASE)
    settings = make_settings(tmp_path, fine_tuning=FineTuningSettings(**{**QUICK, **(fine_tuning or {})}), **overrides)
    app = create_app(settings, transport=httpx.ASGITransport(engine.app))
    with TestClient(app) as client:
        env = Env(client, engine, settings)
        env.wait_ready()
        yield env


def sdk(env: Env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


def chat_line(prompt: str = "hello", answer: str = "ALPHA", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], **extra}


def preference_line(prompt: str = "hello", preferred: str = "ALPHA", other: str = "BRAVO") -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": prompt}]},
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": other}],
    }


def jsonl(lines: list[Any]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, content), purpose="fine-tune").id


def wait_status(client: openai.OpenAI, job_id: str, *statuses: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} stayed {job.status}"
        time.sleep(0.02)


def queued_job(env: Env, key: str, lines: int = 3, **create: Any) -> Any:
    """A job whose chat file passed validation."""
    client = sdk(env, key)
    file_id = upload(client, jsonl([chat_line() for _ in range(lines)]))
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, **create)
    return wait_status(client, job.id, "queued")


class FakeTrainer:
    """The trainer's side of the queue, over the admin API, with a fake adapter instead of training."""

    def __init__(self, env: Env, tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path

    def claim(self) -> dict[str, Any] | None:
        response = self.env.admin("POST", "/fine-tuning/claim", json={"runner": "fake"})
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    def report(self, job: dict[str, Any], step: int = 1, **body: Any) -> httpx.Response:
        events = [{"message": f"Step {step}", "type": "metrics", "data": {"step": step, "train_loss": 1.0 / step}}]
        return self.env.admin(
            "POST", f"/fine-tuning/jobs/{job['id']}/report",
            json={"run_id": job["run_id"], "events": events, "progress": {"step": step, "total_steps": 4}, **body},
        )  # fmt: skip

    def checkpoint(self, job: dict[str, Any], step: int) -> httpx.Response:
        return self.env.admin(
            "POST", f"/fine-tuning/jobs/{job['id']}/checkpoints",
            data={"run_id": job["run_id"], "step_number": str(step), "metrics": json.dumps({"train_loss": 0.5})},
            files={"file": ("checkpoint.tar.gz", self._adapter(f"ckpt-{step}"), "application/gzip")},
        )  # fmt: skip

    def complete(self, job: dict[str, Any], csv: bytes = b"step,train_loss\n1,1.0\n") -> httpx.Response:
        return self.env.admin(
            "POST", f"/fine-tuning/jobs/{job['id']}/complete",
            data={"run_id": job["run_id"], "summary": json.dumps({"trained_tokens": 123, "lineage": {"steps": 4}})},
            files={"adapter": ("adapter.tar.gz", self._adapter(job["id"]), "application/gzip"),
                   "results": ("step_metrics.csv", io.BytesIO(csv), "text/csv")},
        )  # fmt: skip

    def end(self, job: dict[str, Any], status: str, **body: Any) -> httpx.Response:
        return self.env.admin(
            "POST", f"/fine-tuning/jobs/{job['id']}/end", json={"run_id": job["run_id"], "status": status, **body}
        )

    def _adapter(self, name: str) -> bytes:
        return tar_gz(fake_adapter(self.tmp_path / "adapters" / name))
