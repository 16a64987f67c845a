"""The engine's environment: runtime LoRA loading on, and no offline switch (a Hugging Face id must download)."""

from __future__ import annotations

from gateway.engine.supervisor import engine_environment


def test_the_engine_may_download_a_hugging_face_model(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = engine_environment(cpu=True, kv_cache_gib=2, threads_bind="0")
    assert "HF_HUB_OFFLINE" not in env  # offline belongs to the tests, which set it themselves
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
