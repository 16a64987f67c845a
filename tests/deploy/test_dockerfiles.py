"""The images, read as Dockerfiles (no Docker daemon here to build them): non-root, health-checked, pinned bases,
no secret baked in, the right extras, and a build context that keeps secrets and data out."""

from __future__ import annotations

import re
import tomllib

import pytest

from .kube import DEPLOY, ROOT

DOCKERFILES = ["gateway.Dockerfile", "trainer.Dockerfile"]
SECRET_LIKE = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL|CREDENTIAL)", re.IGNORECASE)


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (DEPLOY / name).read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def arg_defaults(name: str) -> dict[str, str]:
    defaults = {}
    for op, args in instructions(name):
        if op == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            defaults[key.strip()] = value.strip().strip('"')
    return defaults


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [args for op, args in final_stage(name) if op == "USER"]
    assert users, f"{name}: the final stage runs as root"
    uid = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0
    assert uid == "10001", "gateway and trainer share the adapter volume: same uid in both images"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name: str) -> None:
    defaults = arg_defaults(name)
    for op, args in instructions(name):
        if op != "FROM":
            continue
        image = args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert ":" in image.split("/")[-1] or "@sha256:" in image, f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), f"{name}: {image}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secret_is_baked_into_an_image(name: str) -> None:
    for op, args in instructions(name):
        if op in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [n for n in names if SECRET_LIKE.search(n)], f"{name}: {op} {args}"
        if op in ("COPY", "ADD"):
            assert ".env" not in args.split() and "var" not in args.split(), f"{name}: {op} {args}"


def test_gateway_image_checks_health_on_its_health_route() -> None:
    checks = [args for op, args in final_stage("gateway.Dockerfile") if op == "HEALTHCHECK"]
    assert len(checks) == 1 and "/health" in checks[0]


def test_gateway_image_installs_no_torch_unless_retrieval_is_asked_for() -> None:
    text = (DEPLOY / "gateway.Dockerfile").read_text()
    assert arg_defaults("gateway.Dockerfile")["RETRIEVAL"] == "0"
    assert 'extras="postgres,s3"' in text and "trainer" not in re.findall(r"\.\[([^\]]*)\]", text)
    assert re.search(r'if \[ "\$RETRIEVAL" = "1" \]; then extras="\$extras,retrieval"', text)
    # The build itself fails if torch slipped in through a dependency.
    assert "import torch" in text


def test_trainer_image_installs_the_trainer_extras_on_cuda() -> None:
    text = (DEPLOY / "trainer.Dockerfile").read_text()
    assert ".[trainer,postgres,s3]" in text
    assert arg_defaults("trainer.Dockerfile")["CUDA_IMAGE"].startswith("nvidia/cuda:")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_copy_every_package_the_project_installs(name: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {args.split()[0] for op, args in instructions(name) if op == "COPY" and "--from" not in args}
    assert packages <= copied, f"{name} misses {packages - copied}"
    # pyproject.toml names README.md as the readme: the build needs it in the context.
    assert {"pyproject.toml", "README.md"} <= {
        a for op, args in instructions(name) if op == "COPY" for a in args.split()
    }


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_excludes_everything_but_sources(name: str) -> None:
    ignore = [
        line.strip()
        for line in (DEPLOY / f"{name}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "start from nothing, then name what the build needs"
    assert {"**/.env", "**/var"} <= set(ignore)
    included = {line[1:] for line in ignore if line.startswith("!")}
    assert not {".env", "var", ".venv", ".git"} & included
