"""The Kubernetes manifests: every rendered object valid against the API schemas, and the policy they must keep."""

from __future__ import annotations

import base64
import json
import re

import kubernetes_validate
import pytest
import yaml

from .kube import (
    COMPONENT,
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    VAR_DIR,
    Manifest,
    config,
    container,
    containers,
    objects,
    one,
    pod_template,
    rendered,
    selects,
    workloads,
)

PRODUCTION = [name for name in OVERLAYS if name.startswith("production")]
SECRET_FILES = {"loraflow_admin_key", "loraflow_secret_key", "loraflow_database_url"}
PLACEHOLDER = "change-me"


def _validate(manifest: Manifest, version: str) -> None:
    name = f"{manifest['kind']}/{manifest['metadata']['name']}"
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{name} is not a valid Kubernetes {version} object at {path}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{name}: {error.message}")


# --- schema ---


def test_every_overlay_is_found() -> None:
    assert {"dev", "production", "production-s3"} <= set(OVERLAYS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_validates_against_the_kubernetes_schema(manifests: list[Manifest], version: str) -> None:
    assert manifests
    for manifest in manifests:
        _validate(manifest, version)


def _standalone_files() -> list[str]:
    """Every YAML file of a kustomization that holds whole objects (resources), not patches or the kustomization."""
    files = []
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec.get("resources", []):
            path = kustomization.parent / resource
            if path.is_file():
                files.append(str(path.relative_to(K8S)))
    files.append("base/secret.example.yaml")
    return sorted(files)


@pytest.mark.parametrize("path", _standalone_files())
def test_standalone_manifest_files_validate(path: str) -> None:
    """Without kustomize, at least every object file is checked as it stands (with the newest schema)."""
    for manifest in yaml.safe_load_all((K8S / path).read_text()):
        _validate(manifest, KUBERNETES_VERSIONS[-1])


# --- gateway ---


def test_gateway_probes_readiness_on_ready_and_liveness_on_health(manifests: list[Manifest]) -> None:
    gateway = container(one(manifests, "Deployment", "gateway"), "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["readinessProbe"]["httpGet"]["port"] in ("http", 8000)


def test_gateway_is_scraped_by_prometheus(manifests: list[Manifest]) -> None:
    annotations = pod_template(one(manifests, "Deployment", "gateway"))["metadata"]["annotations"]
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    assert annotations.get("prometheus.io/port") == "8000"


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_production_runs_several_gateways(overlay: str) -> None:
    manifests = rendered(overlay)
    assert one(manifests, "Deployment", "gateway")["spec"]["replicas"] >= 2
    hpa = one(manifests, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["minReplicas"] >= 2


def test_gateways_have_a_disruption_budget(manifests: list[Manifest]) -> None:
    labels = pod_template(one(manifests, "Deployment", "gateway"))["metadata"]["labels"]
    budgets = [
        b for b in objects(manifests, "PodDisruptionBudget") if selects(b["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1
    spec = budgets[0]["spec"]
    # maxUnavailable 1 lets a one-replica dev gateway be drained and keeps N-1 serving in production.
    assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable", 0) >= 1


def test_gateway_root_filesystem_is_read_only_with_a_writable_tmp(manifests: list[Manifest]) -> None:
    gateway = one(manifests, "Deployment", "gateway")
    spec = pod_template(gateway)["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in containers(spec):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], c["name"]


def test_schema_migrations_run_before_the_gateway_starts(manifests: list[Manifest]) -> None:
    spec = pod_template(one(manifests, "Deployment", "gateway"))["spec"]
    assert [c["command"] for c in spec["initContainers"]] == [["loraflow", "migrate"]]
    assert spec["initContainers"][0]["image"] == spec["containers"][0]["image"]


def test_gateway_attaches_to_the_engines_and_never_starts_one(manifests: list[Manifest]) -> None:
    gateway = container(one(manifests, "Deployment", "gateway"), "gateway")
    assert gateway["command"][:2] == ["loraflow", "up"]
    assert json.loads(config(manifests)["LORAFLOW_ENGINE__URLS"])


# --- every pod ---


def test_no_container_runs_as_root(manifests: list[Manifest]) -> None:
    for workload in workloads(manifests):
        spec = pod_template(workload)["spec"]
        pod = spec.get("securityContext", {})
        for c in containers(spec):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            own = c.get("securityContext", {})
            assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            # An explicit uid: several images (vLLM's among them) default to root, which runAsNonRoot only refuses.
            assert own.get("runAsUser", pod.get("runAsUser", 0)) != 0, where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("privileged", False) is False, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload["metadata"]["name"]


def test_every_container_declares_its_resources(manifests: list[Manifest]) -> None:
    for workload in workloads(manifests):
        for c in containers(pod_template(workload)["spec"]):
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), c["name"]
            assert "memory" in resources.get("limits", {}), c["name"]


def test_images_are_pinned(manifests: list[Manifest]) -> None:
    for workload in workloads(manifests):
        for c in containers(pod_template(workload)["spec"]):
            image = c["image"]
            if "@sha256:" in image:
                continue
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{c['name']}: {image} has no tag"
            assert tag != "latest", f"{c['name']}: {image}"


# --- the engine: private, GPU, runtime LoRA ---


def _engine_labels(manifests: list[Manifest]) -> dict[str, str]:
    return pod_template(one(manifests, "StatefulSet", "engine"))["metadata"]["labels"]


def test_no_service_is_exposed_outside_the_cluster(manifests: list[Manifest]) -> None:
    for service in objects(manifests, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
        assert not service["spec"].get("externalIPs"), service["metadata"]["name"]


def test_engine_is_reached_only_through_its_cluster_internal_service(manifests: list[Manifest]) -> None:
    labels = _engine_labels(manifests)
    engine_services = [s for s in objects(manifests, "Service") if selects(s["spec"].get("selector", {}), labels)]
    assert [s["metadata"]["name"] for s in engine_services] == ["engine"]
    # Headless: each engine pod has its own DNS name, so the gateway can load adapters on every one of them.
    assert engine_services[0]["spec"]["clusterIP"] == "None"
    for ingress in objects(manifests, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "gateway"
                assert path["path"].startswith("/v1"), "only the public API is published"


def test_engine_ingress_is_limited_to_gateway_and_trainer_pods(manifests: list[Manifest]) -> None:
    labels = _engine_labels(manifests)
    policies = [
        p for p in objects(manifests, "NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], labels)
    ]
    assert policies, "no NetworkPolicy selects the engine pods: they would accept traffic from anywhere"
    allowed = {
        part: pod_template(w)["metadata"]["labels"]
        for w in workloads(manifests)
        if (part := pod_template(w)["metadata"]["labels"].get(COMPONENT)) in ("gateway", "trainer")
    }
    assert allowed.keys() == {"gateway", "trainer"}
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "an ingress rule without `from` admits every source"
            assert [p["port"] for p in rule["ports"]] == [8000]
            admitted = set()
            for peer in rule["from"]:
                # A podSelector alone means this namespace only; namespaceSelector or ipBlock would widen it.
                assert peer.keys() == {"podSelector"}, peer
                matched = [part for part, pod in allowed.items() if selects(peer["podSelector"]["matchLabels"], pod)]
                assert matched, f"peer {peer} admits pods other than the gateway and the trainer"
                admitted.update(matched)
            assert admitted == {"gateway", "trainer"}


def test_engine_loads_lora_adapters_at_runtime(manifests: list[Manifest]) -> None:
    engine = container(one(manifests, "StatefulSet", "engine"), "vllm")
    env = {e["name"]: e for e in engine["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    args = engine["args"]
    assert "--enable-lora" in args
    # The engine's limits and model come from the very ConfigMap keys the gateway reads.
    data = config(manifests)
    for flag, variable, key in [
        ("--max-lora-rank", "MAX_LORA_RANK", "LORAFLOW_ENGINE__MAX_LORA_RANK"),
        ("--max-loras", "MAX_LORAS", "LORAFLOW_ENGINE__MAX_LORAS"),
        ("--max-cpu-loras", "MAX_CPU_LORAS", "LORAFLOW_ENGINE__MAX_CPU_LORAS"),
        ("--served-model-name", "SERVED_MODEL_NAME", "LORAFLOW_SERVED_MODEL_NAME"),
    ]:
        assert args[args.index(flag) + 1] == f"$({variable})"
        assert env[variable]["valueFrom"]["configMapKeyRef"]["key"] == key
        assert data[key]
    assert args[0] == "$(BASE_MODEL)"
    assert env["BASE_MODEL"]["valueFrom"]["configMapKeyRef"]["key"] == "LORAFLOW_BASE_MODEL"
    assert engine["readinessProbe"]["httpGet"]["path"] == "/health"
    assert engine["livenessProbe"]["httpGet"]["path"] == "/health"


def test_engine_urls_name_every_engine_replica(manifests: list[Manifest]) -> None:
    engines = one(manifests, "StatefulSet", "engine")
    urls = json.loads(config(manifests)["LORAFLOW_ENGINE__URLS"])
    expected = [f"http://engine-{i}.{engines['spec']['serviceName']}:8000" for i in range(engines["spec"]["replicas"])]
    assert urls == expected


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_engine_and_trainer_request_a_gpu(overlay: str) -> None:
    manifests = rendered(overlay)
    for workload, name in [
        (one(manifests, "StatefulSet", "engine"), "vllm"),
        (one(manifests, "CronJob", "trainer"), "trainer"),
    ]:
        resources = container(workload, name)["resources"]
        assert resources["limits"]["nvidia.com/gpu"] >= 1
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]


def test_dev_runs_without_a_gpu() -> None:
    manifests = rendered("dev")
    for workload in workloads(manifests):
        for c in containers(pod_template(workload)["spec"]):
            assert "nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}), c["name"]
    assert "cpu" in container(one(manifests, "StatefulSet", "engine"), "vllm")["image"]


# --- trainer ---


def test_trainer_cronjob_never_overlaps_itself(manifests: list[Manifest]) -> None:
    cronjob = one(manifests, "CronJob", "trainer")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert container(cronjob, "trainer")["command"][:2] == ["loraflow", "train"]
    assert pod_template(cronjob)["spec"]["restartPolicy"] == "Never"


# --- storage and settings ---


def test_adapters_are_shared_at_the_same_path_by_gateway_engine_and_trainer(manifests: list[Manifest]) -> None:
    assert config(manifests)["LORAFLOW_VAR_DIR"] == VAR_DIR
    claims = {}
    for workload, name in [
        (one(manifests, "Deployment", "gateway"), "gateway"),
        (one(manifests, "StatefulSet", "engine"), "vllm"),
        (one(manifests, "CronJob", "trainer"), "trainer"),
    ]:
        volumes = {v["name"]: v for v in pod_template(workload)["spec"]["volumes"]}
        mounts = [m for m in container(workload, name)["volumeMounts"] if m["mountPath"] == VAR_DIR]
        assert len(mounts) == 1, name
        claims[name] = volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"]
        if name == "vllm":
            assert mounts[0].get("readOnly") is True, "the engine only reads adapters"
    assert len(set(claims.values())) == 1, claims
    one(manifests, "PersistentVolumeClaim", claims["gateway"])


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_production_adapter_volume_is_read_write_many(overlay: str) -> None:
    pvc = one(rendered(overlay), "PersistentVolumeClaim", "loraflow-var")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_secrets_reach_every_loraflow_process_as_files(manifests: list[Manifest]) -> None:
    secrets_dir = config(manifests)["LORAFLOW_SECRETS_DIR"]
    for workload, name in [
        (one(manifests, "Deployment", "gateway"), "gateway"),
        (one(manifests, "Deployment", "gateway"), "migrate"),
        (one(manifests, "CronJob", "trainer"), "trainer"),
    ]:
        volumes = {v["name"]: v for v in pod_template(workload)["spec"]["volumes"]}
        mounts = [m for m in container(workload, name)["volumeMounts"] if m["mountPath"] == secrets_dir]
        assert len(mounts) == 1 and mounts[0].get("readOnly") is True, name
        assert volumes[mounts[0]["name"]]["secret"]["secretName"].startswith("loraflow-secrets"), name


def _secret_values(secret: Manifest) -> dict[str, str]:
    values = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


def test_secrets_hold_placeholders_only(manifests: list[Manifest]) -> None:
    for secret in objects(manifests, "Secret"):
        for key, value in _secret_values(secret).items():
            assert PLACEHOLDER in value, f"Secret {secret['metadata']['name']} holds a real-looking value in {key}"


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_production_ships_no_secret(overlay: str) -> None:
    """Created out of band (kubectl, External Secrets, ...): a production Secret never comes from git."""
    assert objects(rendered(overlay), "Secret") == []


def test_dev_secret_and_template_provide_every_secret_file() -> None:
    dev = [s for s in objects(rendered("dev"), "Secret") if s["metadata"]["name"].startswith("loraflow-secrets")]
    assert len(dev) == 1 and _secret_values(dev[0]).keys() == SECRET_FILES
    template = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())
    assert template["metadata"]["name"] == "loraflow-secrets"
    assert _secret_values(template).keys() == SECRET_FILES
    assert all(PLACEHOLDER in value for value in _secret_values(template).values())


SECRET_LIKE = re.compile(r"(ADMIN_KEY|SECRET_KEY|PASSWORD|DATABASE_URL|ACCESS_KEY|TOKEN)$")


def test_config_maps_hold_no_secret(manifests: list[Manifest]) -> None:
    for config_map in objects(manifests, "ConfigMap"):
        leaked = [key for key in config_map.get("data", {}) if SECRET_LIKE.search(key)]
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds {leaked}"
    for workload in workloads(manifests):
        for c in containers(pod_template(workload)["spec"]):
            literal = [e["name"] for e in c.get("env", []) if SECRET_LIKE.search(e["name"]) and "value" in e]
            assert not literal, f"{c['name']} sets {literal} in plain text"


def test_s3_overlay_stores_adapters_in_a_bucket_with_credentials_from_a_secret() -> None:
    manifests = rendered("production-s3")
    assert config(manifests)["LORAFLOW_ADAPTERS__STORE"].startswith("s3://")
    for workload, name in [
        (one(manifests, "Deployment", "gateway"), "gateway"),
        (one(manifests, "Deployment", "gateway"), "migrate"),
        (one(manifests, "CronJob", "trainer"), "trainer"),
    ]:
        sources = container(workload, name)["envFrom"]
        assert {"secretRef": {"name": "loraflow-s3"}} in sources, name
        assert any(s.get("configMapRef", {}).get("name", "").startswith("loraflow-config") for s in sources), name
