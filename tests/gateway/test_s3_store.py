"""Adapter versions in S3-compatible storage (a local moto server), fetched for the engine on demand."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from gateway.adapter_store import S3AdapterStore
from gateway.app import create_app
from gateway.settings import AdapterStoreSettings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import BASE, Env, fake_adapter, make_settings

MESSAGES = [{"role": "user", "content": "hello"}]


def test_versions_are_stored_in_s3_and_loaded_from_it(tmp_path: Path, s3):
    url, client, bucket = s3
    engine = FakeEngine(BASE)
    settings = make_settings(
        tmp_path, adapters=AdapterStoreSettings(store=f"s3://{bucket}/loraflow", s3_endpoint_url=url)
    )
    with TestClient(create_app(settings, transport=httpx.ASGITransport(engine.app))) as http:
        env = Env(http, engine, settings)
        env.wait_ready()
        key = env.tenant_with_key("acme")
        assert env.register("acme", "support", fake_adapter(tmp_path / "a1")).status_code == 201
        env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert {k.rsplit("/", 1)[-1] for k in keys} == {"adapter_config.json", "adapter_model.safetensors"}
        assert all(k.startswith("loraflow/") for k in keys)

        # A new replica or a wiped disk: the local copy is gone and the engine restarted; it comes back from S3.
        (loaded_path,) = engine.adapters.values()
        shutil.rmtree(settings.adapters_dir)
        engine.adapters.clear()
        deadline = time.monotonic() + 5
        while not engine.adapters:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (Path(loaded_path) / "adapter_model.safetensors").is_file()
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)
        assert sdk.chat.completions.create(model="support", messages=MESSAGES).model == "support@1"


def test_a_stored_version_is_never_overwritten(tmp_path: Path, s3):
    url, _, bucket = s3
    store = S3AdapterStore(f"s3://{bucket}/p", tmp_path / "cache", endpoint_url=url)
    store.put("v1", fake_adapter(tmp_path / "a"))
    with pytest.raises(FileExistsError):
        store.put("v1", fake_adapter(tmp_path / "b"))
