"""Registering, checking, promoting and rolling back adapters through the admin API (fake engine)."""

from __future__ import annotations

import io
import os
import tarfile

import openai
import pytest

from tests.gateway.conftest import ADMIN_KEY, fake_adapter, tar_gz

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(env, key):
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


def stored_versions(env) -> list[str]:
    root = env.settings.var_dir / "adapters"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_admin_routes_need_the_admin_key(env):
    assert env.client.get("/admin/tenants").status_code == 401
    response = env.client.get("/admin/tenants", headers={"Authorization": "Bearer not-it"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    key = env.tenant_with_key("acme")
    assert env.client.get("/admin/tenants", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert env.client.get("/admin/tenants", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def test_tenants_and_keys(env):
    assert env.admin("POST", "/tenants", json={"id": "acme", "name": "Acme"}).status_code == 201
    assert env.admin("POST", "/tenants", json={"id": "acme"}).status_code == 409
    assert env.admin("POST", "/tenants", json={"id": "Not OK!"}).status_code == 400
    created = env.admin("POST", "/tenants/acme/keys", json={"name": "web"}).json()
    assert created["key"].startswith("lf_sk_") and created["key"].startswith(created["prefix"])
    listed = env.admin("GET", "/tenants/acme/keys").json()
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert sdk(env, created["key"]).models.list().data
    assert env.admin("DELETE", f"/tenants/acme/keys/{created['id']}").json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):  # revocation takes effect at once on this replica
        sdk(env, created["key"]).models.list()
    assert env.admin("POST", "/tenants/nope/keys", json={}).status_code == 404


def test_register_stages_the_version_and_promote_serves_it(env, tmp_path):
    key = env.tenant_with_key("acme")
    response = env.register("acme", "support", fake_adapter(tmp_path / "a1"))
    assert response.status_code == 201, response.text
    version = response.json()
    assert (version["id"], version["state"], version["rank"]) == ("support@1", "staged", 8)
    assert str(tmp_path) not in response.text and "lf-" not in response.text
    # Nothing promoted yet: the alias is served by the base model, so an app can call it from day one.
    assert sdk(env, key).chat.completions.create(model="support", messages=MESSAGES).model == "tiny-random"
    assert sdk(env, key).chat.completions.create(model="support@1", messages=MESSAGES).model == "support@1"

    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    env.register("acme", "support", fake_adapter(tmp_path / "a2"))
    promoted = env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 2, "reason": "better"})
    assert promoted.json()["state"] == "production"
    assert sdk(env, key).chat.completions.create(model="support", messages=MESSAGES).model == "support@2"
    adapter = env.admin("GET", "/tenants/acme/adapters/support").json()
    assert adapter["production"] == "support@2"
    assert [v["state"] for v in adapter["versions"]] == ["retired", "production"]

    rolled = env.admin("POST", "/tenants/acme/adapters/support/rollback", json={})
    assert rolled.json()["id"] == "support@1"
    assert sdk(env, key).chat.completions.create(model="support", messages=MESSAGES).model == "support@1"
    history = env.admin("GET", "/tenants/acme/adapters/support/promotions").json()
    assert [(p["from_version"], p["to_version"], p["kind"]) for p in history] == [
        (None, "support@1", "promote"),
        ("support@1", "support@2", "promote"),
        ("support@2", "support@1", "rollback"),
    ]


def test_old_version_is_unloaded_after_promotion_and_pinning_it_reloads_it(env, tmp_path):
    key = env.tenant_with_key("acme")
    env.register("acme", "support", fake_adapter(tmp_path / "a1"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    env.register("acme", "support", fake_adapter(tmp_path / "a2"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 2})
    env.client.portal.call(env.client.app.state.gateway.adapters.wait_idle)
    assert len(env.engine.adapters) == 1  # only version 2 is loaded
    assert sdk(env, key).chat.completions.create(model="support@1", messages=MESSAGES).model == "support@1"


def test_upload_a_tar_gz(env, tmp_path):
    env.tenant_with_key("acme")
    archive = tar_gz(fake_adapter(tmp_path / "a1"))
    response = env.admin(
        "POST", "/tenants/acme/adapters/support/versions",
        files={"file": ("adapter.tar.gz", archive, "application/gzip")}, data={"lineage": '{"source": "upload"}'},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["lineage"] == {"source": "upload"}


def _tar_with(entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


BAD_CONFIGS = {
    "not lora": {"peft_type": "PREFIX_TUNING"},
    "rank above max": {"r": 64},
    "unsupported target": {"target_modules": ["lm_head"]},
    "regex targets": {"target_modules": ".*proj"},
    "other base model": {"base_model_name_or_path": "meta-llama/Llama-3.1-8B"},
    "modules_to_save": {"modules_to_save": ["lm_head"]},
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_adapter_configs_are_refused_and_change_nothing(env, tmp_path, case):
    key = env.tenant_with_key("acme")
    env.register("acme", "support", fake_adapter(tmp_path / "good"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    loaded_before = dict(env.engine.adapters)
    path = fake_adapter(tmp_path / "bad")
    import json

    config = json.loads((path / "adapter_config.json").read_text())
    config.update(BAD_CONFIGS[case])
    (path / "adapter_config.json").write_text(json.dumps(config))
    response = env.register("acme", "support", path)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_adapter"
    assert [v["id"] for v in env.admin("GET", "/tenants/acme/adapters/support/versions").json()] == ["support@1"]
    assert len(stored_versions(env)) == 1 and env.engine.adapters == loaded_before
    assert sdk(env, key).chat.completions.create(model="support", messages=MESSAGES).model == "support@1"


def test_broken_files_are_refused(env, tmp_path):
    env.tenant_with_key("acme")
    no_config = fake_adapter(tmp_path / "no-config")
    (no_config / "adapter_config.json").unlink()
    truncated = fake_adapter(tmp_path / "truncated")
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    pickle = fake_adapter(tmp_path / "pickle")
    (pickle / "adapter_model.safetensors").rename(pickle / "adapter_model.bin")
    linked = fake_adapter(tmp_path / "linked")
    os.symlink("/etc/passwd", linked / "README.md")
    not_json = fake_adapter(tmp_path / "not-json")
    (not_json / "adapter_config.json").write_text("{oops")
    for path in (no_config, truncated, pickle, linked, not_json, tmp_path / "missing"):
        response = env.register("acme", "support", path)
        assert response.status_code == 422, (path, response.text)
    assert stored_versions(env) == []
    assert env.admin("GET", "/tenants/acme/adapters/support").status_code == 404


def test_hostile_archives_are_refused(env, tmp_path):
    env.tenant_with_key("acme")
    good = fake_adapter(tmp_path / "good")
    config = (good / "adapter_config.json").read_bytes()
    archives = {
        "traversal": _tar_with([_file("../evil.txt", b"x"), _file("adapter_config.json", config)]),
        "absolute": _tar_with([_file("/tmp/evil.txt", b"x")]),
        "symlink": _tar_with([_link("adapter_model.safetensors", "/etc/passwd"), _file("adapter_config.json", config)]),
        "not a tar": b"definitely not gzip",
        "empty": _tar_with([]),
    }
    for name, data in archives.items():
        response = env.admin(
            "POST", "/tenants/acme/adapters/support/versions", files={"file": ("a.tar.gz", data, "application/gzip")}
        )
        assert response.status_code == 422, (name, response.text)
    assert not (tmp_path / "evil.txt").exists() and not (env.settings.var_dir / "evil.txt").exists()
    assert stored_versions(env) == []


def test_engine_refusing_the_weights_rolls_the_registration_back(env, tmp_path, monkeypatch):
    env.tenant_with_key("acme")
    path = fake_adapter(tmp_path / "a1")
    # The engine loads from the stored copy; refuse any path it is given.
    original = env.engine.app.routes
    env.engine.refuse_paths = _Everything()
    response = env.register("acme", "support", path)
    assert response.status_code == 422 and "could not load" in response.json()["error"]["message"]
    assert stored_versions(env) == [] and original
    assert env.admin("GET", "/tenants/acme/adapters/support/versions").json() == []


class _Everything:
    def __contains__(self, item) -> bool:
        return True


def test_promote_unknown_version_is_not_found(env, tmp_path):
    env.tenant_with_key("acme")
    env.register("acme", "support", fake_adapter(tmp_path / "a1"))
    assert env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 9}).status_code == 404
    assert env.admin("POST", "/tenants/acme/adapters/nope/promote", json={"version": 1}).status_code == 404
    assert env.admin("POST", "/tenants/acme/adapters/support/rollback", json={}).status_code == 409


def test_a_bad_retention_period_is_refused(env):
    assert env.admin("POST", "/tenants", json={"id": "acme", "settings": {"retention_days": -1}}).status_code == 400
    assert env.admin("POST", "/tenants", json={"id": "acme", "settings": {"retention_days": 30}}).status_code == 201
    response = env.admin("PATCH", "/tenants/acme", json={"settings": {"retention_days": "soon"}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "settings.retention_days"
    assert env.admin("GET", "/tenants/acme").json()["settings"]["retention_days"] == 30


def test_a_version_can_be_downloaded_as_a_tar_gz(env, tmp_path):
    env.tenant_with_key("acme")
    source = fake_adapter(tmp_path / "a1")
    env.register("acme", "support", source)
    response = env.admin("GET", "/tenants/acme/adapters/support/versions/1/archive")
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        weights = tar.extractfile("support@1/adapter_model.safetensors").read()
    assert names == ["support@1", "support@1/adapter_config.json", "support@1/adapter_model.safetensors"]
    assert weights == (source / "adapter_model.safetensors").read_bytes()
    assert env.admin("GET", "/tenants/acme/adapters/support/versions/9/archive").status_code == 404
