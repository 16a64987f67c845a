"""The files and fine-tuning operations against OpenAI's published API description (`openai-openapi.yml`, OpenAPI
3.1: its component schemas are JSON Schema 2020-12; the part read here is kept in `openai_fine_tuning_api.json`, see
`openai_description.py`): every response body a route gives, in every job status, is valid
against the schema the description names for that operation; the requests our tests send are valid requests; an
error is OpenAI's `ErrorResponse`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.gateway import openai_description
from tests.gateway.conftest import BASE
from tests.gateway.fine_tuning_support import (
    FakeTrainer,
    chat_line,
    jsonl,
    open_env,
    preference_line,
    sdk,
    wait_status,
)

URN = "urn:openai-openapi"


@cache
def spec() -> dict[str, Any]:
    return as_json_schema(openai_description.load())


def as_json_schema(node: Any) -> Any:
    """The description with the OpenAPI 3.0 keywords it still has in places written as JSON Schema 2020-12 says
    them: `exclusiveMinimum: true` (with `minimum`) and `nullable: true`; otherwise 0.2 would fail `beta`'s bounds
    and null a nullable field."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    for bound in ("Minimum", "Maximum"):
        if node.get(f"exclusive{bound}") is True and bound.lower() in node:
            node[f"exclusive{bound}"] = node.pop(bound.lower())
        elif node.get(f"exclusive{bound}") is False:
            node.pop(f"exclusive{bound}")
    if node.pop("nullable", False) is True:
        node = {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def registry() -> Registry:
    return Registry().with_resource(URN, Resource.from_contents(spec(), default_specification=DRAFT202012))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    # The description's `$ref`s point into its own document: resolve them inside the registered resource.
    return Draft202012Validator(json.loads(json.dumps(schema).replace('"#/', f'"{URN}#/')), registry=registry())


def component(name: str) -> Draft202012Validator:
    return validator({"$ref": f"#/components/schemas/{name}"})


def operation(operation_id: str) -> dict[str, Any]:
    method, path = openai_description.OPERATIONS[operation_id]
    found = spec()["paths"][path][method]
    assert found["operationId"] == operation_id
    return found


def check_response(operation_id: str, body: Any) -> None:
    schema = operation(operation_id)["responses"]["200"]["content"]["application/json"]["schema"]
    errors = sorted(validator(schema).iter_errors(body), key=lambda error: list(error.path))
    assert not errors, f"{operation_id}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def check_request(operation_id: str, body: dict[str, Any]) -> None:
    content = operation(operation_id)["requestBody"]["content"]
    schema = (content.get("application/json") or content["multipart/form-data"])["schema"]
    errors = list(validator(schema).iter_errors(body))
    assert not errors, f"{operation_id} request: " + "; ".join(e.message for e in errors[:5])


def test_every_operation_is_in_the_description_and_served(tmp_path: Path):
    with open_env(tmp_path) as env:
        routes = {(method.lower(), route.path) for route in env.client.app.routes  # type: ignore[attr-defined]
                  for method in getattr(route, "methods", ())}  # fmt: skip
    for operation_id, (method, path) in openai_description.OPERATIONS.items():
        assert operation(operation_id)
        assert (method, "/v1" + path) in routes, operation_id


def test_files_responses_and_requests_follow_the_description(tmp_path: Path):
    with open_env(tmp_path) as env:
        auth = {"Authorization": f"Bearer {env.tenant_with_key('acme')}"}
        check_request("createFile", {"file": "train.jsonl", "purpose": "fine-tune"})
        created = env.client.post("/v1/files", headers=auth, data={"purpose": "fine-tune"},
                                  files={"file": ("train.jsonl", jsonl([chat_line()] * 3))})  # fmt: skip
        assert created.status_code == 200
        check_response("createFile", created.json())
        file_id = created.json()["id"]
        check_response("retrieveFile", env.client.get(f"/v1/files/{file_id}", headers=auth).json())
        check_response("listFiles", env.client.get("/v1/files", headers=auth).json())
        content = env.client.get(f"/v1/files/{file_id}/content", headers=auth)
        check_response("downloadFile", content.text)
        check_response("deleteFile", env.client.delete(f"/v1/files/{file_id}", headers=auth).json())
        missing = env.client.get(f"/v1/files/{file_id}", headers=auth)
        assert missing.status_code == 404 and not list(component("ErrorResponse").iter_errors(missing.json()))


def test_jobs_in_every_status_follow_the_description(tmp_path: Path):
    with open_env(tmp_path) as env:
        auth = {"Authorization": f"Bearer {env.tenant_with_key('acme')}"}

        def upload(content: bytes) -> str:
            response = env.client.post("/v1/files", headers=auth, data={"purpose": "fine-tune"},
                                       files={"file": ("t.jsonl", content)})  # fmt: skip
            return response.json()["id"]

        def create(body: dict[str, Any]) -> dict[str, Any]:
            check_request("createFineTuningJob", body)
            response = env.client.post("/v1/fine_tuning/jobs", headers=auth, json=body)
            assert response.status_code == 200, response.text
            check_response("createFineTuningJob", response.json())
            return response.json()

        def job(job_id: str) -> dict[str, Any]:
            body = env.client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth).json()
            check_response("retrieveFineTuningJob", body)
            return body

        chat = upload(jsonl([chat_line()] * 3))
        create({"model": BASE, "training_file": chat, "hyperparameters": {"n_epochs": 2}, "metadata": {"k": "v"}})
        method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": "auto"}}}
        create({"model": BASE, "training_file": upload(jsonl([preference_line()] * 3)), "method": method})
        failing = create({"model": BASE, "training_file": upload(jsonl(["{"] * 3))})
        running = create({"model": BASE, "training_file": chat, "suffix": "s", "seed": 3, "validation_file": chat})
        cancelled = create({"model": BASE, "training_file": chat})
        client_view = sdk(env, auth["Authorization"].removeprefix("Bearer "))
        for made in (failing, running, cancelled):
            wait_status(client_view, made["id"], "queued", "failed")
        assert job(failing["id"])["status"] == "failed" and job(failing["id"])["error"]["param"] == "training_file"
        cancelled_body = env.client.post(f"/v1/fine_tuning/jobs/{cancelled['id']}/cancel", headers=auth).json()
        check_response("cancelFineTuningJob", cancelled_body)

        trainer = FakeTrainer(env, tmp_path)
        while (claimed := trainer.claim()) is not None and claimed["id"] != running["id"]:
            trainer.end(claimed, "failed", message="not this one")  # one job of a tenant at a time: the next
        assert claimed is not None
        trainer.report(claimed, 1)
        assert job(running["id"])["status"] == "running"
        trainer.checkpoint(claimed, 1)
        trainer.complete(claimed)
        assert job(running["id"])["status"] == "succeeded"

        check_response("listPaginatedFineTuningJobs", env.client.get("/v1/fine_tuning/jobs", headers=auth).json())
        events = env.client.get(f"/v1/fine_tuning/jobs/{running['id']}/events", headers=auth).json()
        assert {event["type"] for event in events["data"]} == {"message", "metrics"}
        check_response("listFineTuningEvents", events)
        checkpoints = env.client.get(f"/v1/fine_tuning/jobs/{running['id']}/checkpoints", headers=auth).json()
        assert checkpoints["data"]
        check_response("listFineTuningJobCheckpoints", checkpoints)
        result_file = job(running["id"])["result_files"][0]
        check_response("retrieveFile", env.client.get(f"/v1/files/{result_file}", headers=auth).json())
        refused = env.client.post("/v1/fine_tuning/jobs", headers=auth, json={"model": BASE})
        assert refused.status_code == 400 and not list(component("ErrorResponse").iter_errors(refused.json()))


@pytest.mark.skipif(not openai_description.SHARED.is_file(), reason="../shared/openai-openapi.yml is not here")
def test_the_extract_is_the_published_description():
    published = yaml.safe_load(openai_description.SHARED.read_text())
    assert openai_description.extract(published) == openai_description.load()
