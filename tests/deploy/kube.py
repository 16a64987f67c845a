"""Where the deployment artifacts are, the Kubernetes overlays rendered with kustomize, and queries on the result.

Rendering uses a `kustomize` binary or `kubectl kustomize` (built in since kubectl 1.14), whichever is on PATH.
Without either, the rendered-overlay tests skip and the base and overlay files are still validated one by one as
plain manifests (test_k8s_manifests.py::test_standalone_manifest_files_validate).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())

# The Kubernetes versions every object is validated against: the oldest we support and the newest schema shipped.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]

# What a pod of each part carries (the NetworkPolicy and the Services select on these).
COMPONENT = "app.kubernetes.io/component"
VAR_DIR = "/var/lib/loraflow"

Manifest = dict[str, Any]


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[Manifest]:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: rendered overlays cannot be checked")
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"kustomize failed on {directory.relative_to(ROOT)}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_rendered: dict[str, list[Manifest]] = {}


def rendered(overlay: str) -> list[Manifest]:
    """Rendered once per session: kustomize takes a fraction of a second, but every test reads the result."""
    if overlay not in _rendered:
        _rendered[overlay] = render(K8S / "overlays" / overlay)
    return _rendered[overlay]


def objects(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_template(workload: Manifest) -> Manifest:
    """The pod template of a Deployment, StatefulSet, Job or CronJob."""
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


def container(workload: Manifest, name: str) -> Manifest:
    spec = pod_template(workload)["spec"]
    found = [c for c in containers(spec) if c["name"] == name]
    assert len(found) == 1, f"{workload['kind']} {workload['metadata']['name']} has no container {name}"
    return found[0]


def config(manifests: list[Manifest]) -> dict[str, str]:
    """The data of the loraflow-config ConfigMap (its name carries kustomize's hash suffix)."""
    found = [m for m in objects(manifests, "ConfigMap") if m["metadata"]["name"].startswith("loraflow-config")]
    assert len(found) == 1
    return found[0]["data"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
