"""`/v1/models` says which version serves each alias (`root`), so a client sees a promotion flip it."""

from __future__ import annotations

from tests.gateway.conftest import BASE, fake_adapter


def test_an_alias_in_models_names_the_version_that_serves_it(env, tmp_path):
    key = env.tenant_with_key("acme")
    headers = {"Authorization": f"Bearer {key}"}
    env.admin("POST", "/tenants/acme/adapters", json={"alias": "support"})

    def root() -> str:
        models = env.client.get("/v1/models", headers=headers).json()["data"]
        return next(m["root"] for m in models if m["id"] == "support")

    assert root() == BASE  # nothing promoted yet: the base model serves it
    for number in (1, 2):
        env.register("acme", "support", fake_adapter(tmp_path / f"v{number}"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    assert root() == "support@1"
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 2})
    assert root() == "support@2"
