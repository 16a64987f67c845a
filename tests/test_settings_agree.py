"""The trainer reads some of the gateway's settings from the same `LORAFLOW_*` variables with a class of its own (it
must not import the gateway). For the same environment, both must mean the same thing."""

from __future__ import annotations

import os

import pytest

from gateway.settings import Settings
from trainer.settings import TrainerSettings

# The settings the trainer copies, by their path in each class (the same path in both).
COPIED = (
    "env",
    "host",
    "port",
    "var_dir",
    "database_url",
    "admin_key",
    "base_model",
    "served_model_name",
    "engine.max_lora_rank",
    "engine.lora_target_modules",
)
DERIVED = ("sqlalchemy_url", "base_model_path", "public_model_name")

ENVIRONMENTS = {
    "defaults": {},
    "set": {
        "LORAFLOW_ENV": "production",
        "LORAFLOW_HOST": "0.0.0.0",
        "LORAFLOW_PORT": "9100",
        "LORAFLOW_VAR_DIR": "/srv/loraflow",
        "LORAFLOW_DATABASE_URL": "postgresql://u@db/loraflow",
        "LORAFLOW_ADMIN_KEY": "lf_admin_x",
        "LORAFLOW_SECRET_KEY": "s",
        "LORAFLOW_BASE_MODEL": "Qwen/Qwen2.5-0.5B-Instruct",
        "LORAFLOW_SERVED_MODEL_NAME": "qwen",
        "LORAFLOW_ENGINE__MAX_LORA_RANK": "64",
        "LORAFLOW_ENGINE__LORA_TARGET_MODULES": '["q_proj", "v_proj"]',
    },
    "tiny model": {"LORAFLOW_BASE_MODEL": "tiny-random", "LORAFLOW_VAR_DIR": "elsewhere"},
}


def value(settings: object, path: str) -> object:
    for part in path.split("."):
        settings = getattr(settings, part)
    secret = getattr(settings, "get_secret_value", None)
    return secret() if secret else settings


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_the_trainer_reads_the_gateways_settings_as_the_gateway_does(environment, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env file of the working tree
    for name in [n for n in os.environ if n.startswith("LORAFLOW_")]:
        monkeypatch.delenv(name)
    for name, setting in environment.items():
        monkeypatch.setenv(name, setting)
    gateway, trainer = Settings(), TrainerSettings()
    for path in COPIED + DERIVED:
        assert value(trainer, path) == value(gateway, path), path


def test_every_setting_the_trainer_shares_is_checked():
    """A setting added to both classes later must be added to COPIED (or be the trainer's own)."""
    own = {"gateway_url", "heartbeat_s", "progress_interval_s", "http_timeout_s", "scheduler"}
    shared = (set(TrainerSettings.model_fields) & set(Settings.model_fields)) - own
    assert shared == {path.split(".")[0] for path in COPIED}
