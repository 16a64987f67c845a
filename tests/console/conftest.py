"""Fixtures of the console's server-side tests: a gateway on the fake engine with two tenants, keys of each kind,
an alias with two versions, some rated interactions and a finished training run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.training_api import runs
from tests.console.support import realistic_report
from tests.gateway.conftest import ADMIN_KEY, Env, env, fake_adapter  # noqa: F401  (`env`: a fixture)


@dataclass
class World:
    env: Env
    read_only: str  # acme's key, read-only in the console
    tenant_admin: str  # acme's tenant-admin key
    other: str  # globex's tenant-admin key
    run_id: str
    completion_id: str  # an acme completion rated 👎 with a correction

    @property
    def client(self):
        return self.env.client


@pytest.fixture
def world(env: Env, tmp_path: Path) -> Iterator[World]:  # noqa: F811  (`env`: tests/gateway/conftest.py)
    read_only = env.tenant_with_key("acme")
    tenant_admin = env.tenant_with_key("acme", tenant_admin=True)
    other = env.tenant_with_key("globex", tenant_admin=True)
    for number in (1, 2):
        assert env.register("acme", "support", fake_adapter(tmp_path / f"a{number}")).status_code == 201
    for number in (2, 1):  # support@1 serves, and a rollback would go back to support@2
        assert env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": number}).status_code == 200
    env.register("globex", "secret-alias", fake_adapter(tmp_path / "g1"))
    headers = {"Authorization": f"Bearer {read_only}"}
    body = {"model": "support", "messages": [{"role": "user", "content": "Where is my parcel?"}], "user": "ann"}
    completion = env.client.post("/v1/chat/completions", json=body, headers=headers).json()
    rated = {"completion_id": completion["id"], "rating": "down", "correction": "It ships on Monday.", "user": "ann"}
    assert env.client.post("/v1/feedback", json=rated, headers=headers).status_code == 201
    gw = env.client.app.state.gateway  # type: ignore[attr-defined]
    with gw.sessions() as session:
        run = runs.start_run(session, "acme", "support", "schedule", "test", 60)
    with gw.sessions() as session:  # one session per call, as the training API uses them
        report = realistic_report(run.id, "acme", "support")
        changes = {"status": "promoted", "reason": report["reason"], "report": report, "candidate": "support@2"}
        runs.update_run(session, "acme", run.id, changes, 60)
    yield World(env, read_only, tenant_admin, other, run.id, completion["id"])


ADMIN = ADMIN_KEY
