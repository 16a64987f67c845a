"""Fixtures of the deployment tests: one rendered Kubernetes overlay at a time."""

from __future__ import annotations

import pytest

from .kube import OVERLAYS, Manifest, rendered


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def manifests(overlay: str) -> list[Manifest]:
    """Every object of one overlay, as `kubectl apply -k` would send it."""
    return rendered(overlay)
