"""The part of OpenAI's API description (`../shared/openai-openapi.yml`, 3 MB) that the contract tests read: the
files and fine-tuning operations and every component they reach, kept in the repository
(`openai_fine_tuning_api.json`) so the tests run wherever the repository is cloned.

    python -m tests.gateway.openai_description   # write the extract again from ../shared/openai-openapi.yml
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

SHARED = Path(__file__).resolve().parents[3] / "shared" / "openai-openapi.yml"
EXTRACT = Path(__file__).with_name("openai_fine_tuning_api.json")
OPERATIONS = {  # operationId: (method, path), as the description names them
    "createFile": ("post", "/files"),
    "listFiles": ("get", "/files"),
    "retrieveFile": ("get", "/files/{file_id}"),
    "deleteFile": ("delete", "/files/{file_id}"),
    "downloadFile": ("get", "/files/{file_id}/content"),
    "createFineTuningJob": ("post", "/fine_tuning/jobs"),
    "listPaginatedFineTuningJobs": ("get", "/fine_tuning/jobs"),
    "retrieveFineTuningJob": ("get", "/fine_tuning/jobs/{fine_tuning_job_id}"),
    "cancelFineTuningJob": ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"),
    "listFineTuningEvents": ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/events"),
    "listFineTuningJobCheckpoints": ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"),
}
COMPONENTS = ["ErrorResponse"]  # schemas the tests name themselves


def extract(description: dict[str, Any]) -> dict[str, Any]:
    """The operations in `OPERATIONS`, the schemas in `COMPONENTS`, and the components their `$ref`s reach,
    transitively; nothing else."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS.values():
        paths.setdefault(path, {})[method] = description["paths"][path][method]
    components: dict[str, dict[str, Any]] = {}
    pending = [*_refs(paths), *(("schemas", name) for name in COMPONENTS)]
    while pending:
        kind, name = pending.pop()
        if name in components.get(kind, {}):
            continue
        node = description["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        pending += _refs(node)
    return {"openapi": description["openapi"], "info": description["info"], "paths": paths, "components": components}


def load() -> dict[str, Any]:
    return json.loads(EXTRACT.read_text())


def _refs(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if not isinstance(node, dict):
        return []
    found = [ref for value in node.values() for ref in _refs(value)]
    target = node.get("$ref")
    if isinstance(target, str) and target.startswith("#/components/"):
        _, _, kind, name = target.split("/", 3)
        found.append((kind, name))
    return found


if __name__ == "__main__":
    EXTRACT.write_text(json.dumps(extract(yaml.safe_load(SHARED.read_text())), indent=1, sort_keys=True) + "\n")
    print(f"written: {EXTRACT} ({EXTRACT.stat().st_size:,} bytes)")
