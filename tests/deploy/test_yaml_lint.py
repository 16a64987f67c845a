"""Every YAML file under deploy/ passes yamllint with deploy/.yamllint, warnings included."""

from __future__ import annotations

import pytest
from yamllint import linter
from yamllint.config import YamlLintConfig

from .kube import DEPLOY, ROOT

CONFIG = DEPLOY / ".yamllint"
FILES = sorted(
    str(path.relative_to(ROOT)) for path in DEPLOY.rglob("*") if path.suffix in (".yaml", ".yml") or path == CONFIG
)


def test_every_deploy_yaml_file_is_linted() -> None:
    assert "deploy/compose.yaml" in FILES
    assert "deploy/k8s/base/kustomization.yaml" in FILES
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES)
def test_yaml_is_lint_free(path: str) -> None:
    config = YamlLintConfig(file=str(CONFIG))
    problems = list(linter.run((ROOT / path).read_text(), config, str(ROOT / path)))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column}: [{p.level}] {p.desc} ({p.rule})" for p in problems)
