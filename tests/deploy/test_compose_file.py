"""The compose file: valid against the Compose Specification once interpolated, and keeping the same policy as the
Kubernetes manifests (engine private, health-gated start, required variables failing fast).

`docker compose config` checks it too where the compose plugin is installed (it needs no Docker daemon). Without
it, the file is interpolated here the way compose does it and validated against the compose-spec JSON schema that
check-jsonschema ships.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .kube import DEPLOY, VAR_DIR

COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
REQUIRED = [
    "LORAFLOW_ADMIN_KEY",
    "LORAFLOW_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "LORAFLOW_BASE_MODEL",
    "LORAFLOW_SERVED_MODEL_NAME",
]
HEALTHCHECKED = ["postgres", "engine", "gateway"]


class InterpolationError(ValueError):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}, ${VAR+r}."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise InterpolationError(f"unclosed ${{ in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(_substitute(text[i + 2 : j - 1], env))
            i = j
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation in {text!r}")
    return "".join(out)


def _substitute(expression: str, env: dict[str, str]) -> str:
    match = _NAME.match(expression)
    if not match:
        raise InterpolationError(f"invalid variable in ${{{expression}}}")
    name, rest = match.group(), expression[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    colon = rest.startswith(":")
    operator, argument = rest[1 if colon else 0], rest[2 if colon else 1 :]
    missing = value is None or (colon and value == "")
    if operator == "-":
        return interpolate(argument, env) if missing else value  # type: ignore[return-value]
    if operator == "?":
        if missing:
            raise InterpolationError(f"required variable {name} is missing a value: {argument}")
        return value  # type: ignore[return-value]
    if operator == "+":
        return "" if missing else interpolate(argument, env)
    raise InterpolationError(f"invalid interpolation ${{{expression}}}")


def _walk(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, env) for value in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def filled_env() -> dict[str, str]:
    """.env.example with every required value filled in, as a user would."""
    env = read_env_file(ENV_EXAMPLE)
    env.update({name: env[name] or f"test-{name.lower().replace('_', '-')}" for name in REQUIRED})
    return env


def load(env: dict[str, str]) -> dict[str, Any]:
    return _walk(yaml.safe_load(COMPOSE.read_text()), env)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(filled_env())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def compose_plugin() -> bool:
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return result.returncode == 0


# --- validity ---


def test_interpolated_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.skipif(not compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env_file = tmp_path / ".env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        command = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"]
        # Only the env file speaks: a LORAFLOW_* variable of the caller's shell must not fill a gap.
        clean = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_CONFIG") if key in os.environ}
        return subprocess.run(command, capture_output=True, text=True, check=False, env=clean)

    accepted = config(filled_env())
    assert accepted.returncode == 0, accepted.stderr
    refused = config({k: v for k, v in filled_env().items() if k != "LORAFLOW_ADMIN_KEY"})
    assert refused.returncode != 0 and "LORAFLOW_ADMIN_KEY" in refused.stderr


# --- required variables ---


@pytest.mark.parametrize("name", REQUIRED)
def test_a_required_variable_left_unset_stops_compose(name: str) -> None:
    env = filled_env()
    del env[name]
    with pytest.raises(InterpolationError, match=name):
        load(env)
    env[name] = ""
    with pytest.raises(InterpolationError, match=name):
        load(env)


def test_the_example_env_file_must_be_filled_in_before_it_starts() -> None:
    with pytest.raises(InterpolationError):
        load(read_env_file(ENV_EXAMPLE))


def test_every_variable_the_file_uses_is_in_the_example_env_file() -> None:
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert used <= read_env_file(ENV_EXAMPLE).keys(), used - read_env_file(ENV_EXAMPLE).keys()


def test_secrets_have_no_default() -> None:
    text = COMPOSE.read_text()
    for name in ["LORAFLOW_ADMIN_KEY", "LORAFLOW_SECRET_KEY", "POSTGRES_PASSWORD"]:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), f"{name}: {uses}"


def test_optional_credentials_are_passed_only_when_set(compose: dict[str, Any]) -> None:
    """An empty AWS_ENDPOINT_URL or HF_TOKEN is not the same as none: boto3 and the Hub client would use it."""
    for name in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"]:
        for service in ("gateway", "trainer", "migrate"):
            assert compose["services"][service]["environment"][name] is None, f"{service}: {name}"
    assert compose["services"]["model-download"]["environment"]["HF_TOKEN"] is None


# --- the engine stays private ---


def test_engine_and_database_publish_no_port_and_sit_on_internal_networks_only(compose: dict[str, Any]) -> None:
    for name in ["engine", "postgres"]:
        service = compose["services"][name]
        assert "ports" not in service, f"{name} is published"
        assert service.get("network_mode") is None
        for network in service["networks"]:
            assert compose["networks"][network].get("internal") is True, f"{name} joins non-internal {network}"


def test_only_the_gateway_is_published(services: dict[str, Any]) -> None:
    assert [name for name, service in services.items() if service.get("ports")] == ["gateway"]
    published = services["gateway"]["ports"][0]
    assert published.endswith(":8000")
    assert published.startswith("127.0.0.1:"), "by default the gateway is published on this host only"


def test_only_the_gateway_and_trainer_share_a_network_with_the_engine(compose: dict[str, Any]) -> None:
    engine_networks = set(compose["services"]["engine"]["networks"])
    neighbours = {
        name
        for name, service in compose["services"].items()
        if name != "engine" and engine_networks & set(service.get("networks", []))
    }
    assert neighbours == {"gateway", "trainer"}


# --- health-gated start ---


@pytest.mark.parametrize("name", HEALTHCHECKED)
def test_long_running_services_have_a_healthcheck(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable")


def test_health_checks_use_the_right_routes(services: dict[str, Any]) -> None:
    assert "8000/health" in " ".join(services["engine"]["healthcheck"]["test"])
    assert "8000/ready" in " ".join(services["gateway"]["healthcheck"]["test"])


def test_start_order_waits_for_health_and_completion(services: dict[str, Any]) -> None:
    conditions = {"service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions only orders container starts"
        for dependency, spec in depends.items():
            assert spec["condition"] in conditions, f"{name} -> {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"
    assert services["gateway"]["depends_on"]["engine"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["trainer"]["depends_on"]["gateway"]["condition"] == "service_healthy"


# --- what runs where ---


def test_engine_gets_a_gpu_and_loads_adapters_at_runtime(services: dict[str, Any]) -> None:
    engine = services["engine"]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert engine["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "--enable-lora" in engine["command"]
    assert engine["image"].startswith("vllm/vllm-openai:")


def test_engine_and_gateway_read_the_same_lora_limits_and_model() -> None:
    env = filled_env() | {"LORAFLOW_ENGINE__MAX_LORA_RANK": "64", "LORAFLOW_ENGINE__MAX_LORAS": "3"}
    services = load(env)["services"]
    command, settings = services["engine"]["command"], services["gateway"]["environment"]
    assert command[command.index("--max-lora-rank") + 1] == settings["LORAFLOW_ENGINE__MAX_LORA_RANK"] == "64"
    assert command[command.index("--max-loras") + 1] == settings["LORAFLOW_ENGINE__MAX_LORAS"] == "3"
    assert command[0] == settings["LORAFLOW_BASE_MODEL"]
    assert command[command.index("--served-model-name") + 1] == settings["LORAFLOW_SERVED_MODEL_NAME"]


def test_trainer_gets_a_gpu_and_runs_the_scheduler(services: dict[str, Any]) -> None:
    trainer = services["trainer"]
    assert trainer["command"] == ["scheduler"]
    assert trainer["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert trainer["environment"]["LORAFLOW_GATEWAY_URL"] == "http://gateway:8000"


def test_gateway_attaches_to_the_engine(services: dict[str, Any]) -> None:
    command = services["gateway"]["command"]
    assert command[0] == "up"
    assert command[command.index("--engine-url") + 1] == "http://engine:8000"
    assert json.loads(services["gateway"]["environment"]["LORAFLOW_ENGINE__URLS"]) == ["http://engine:8000"]
    assert services["gateway"]["environment"]["LORAFLOW_ENV"] == "production"


def test_adapters_are_shared_at_the_same_path(services: dict[str, Any]) -> None:
    def var_mount(name: str) -> str:
        mounts = [m for m in services[name]["volumes"] if m.split(":")[1] == VAR_DIR]
        assert len(mounts) == 1, name
        return mounts[0]

    assert services["gateway"]["environment"]["LORAFLOW_VAR_DIR"] == VAR_DIR
    assert var_mount("gateway") == var_mount("trainer") == f"var:{VAR_DIR}"
    assert var_mount("engine") == f"var:{VAR_DIR}:ro", "the engine only reads adapters"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: {image}"


def test_gateway_runs_hardened(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert gateway["read_only"] is True and gateway["tmpfs"] == ["/tmp"]
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
