"""The trainer's own settings (environment, secrets) and the tenant settings it owns (defaults, validation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.settings import load_settings
from trainer.tenant_settings import SettingsError, TenantTrainingSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path: Path):
    for name in ("LORAFLOW_GATEWAY_URL", "LORAFLOW_ADMIN_KEY", "LORAFLOW_DATABASE_URL", "LORAFLOW_VAR_DIR",
                 "LORAFLOW_SECRETS_DIR", "LORAFLOW_ENV", "LORAFLOW_PORT", "LORAFLOW_BASE_MODEL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_point_at_the_local_gateway_and_the_sqlite_record(tmp_path: Path):
    settings = load_settings()
    assert settings.url == "http://127.0.0.1:8000"
    assert settings.sqlalchemy_url == "sqlite:///var/loraflow.db"
    assert settings.base_model_path == "var/models/smollm2-135m-instruct"
    assert settings.engine.max_lora_rank == 16 and "q_proj" in settings.engine.lora_target_modules


def test_shares_the_gateway_variables(monkeypatch):
    monkeypatch.setenv("LORAFLOW_GATEWAY_URL", "http://gateway:8000/")
    monkeypatch.setenv("LORAFLOW_DATABASE_URL", "postgresql://u@db/loraflow")
    monkeypatch.setenv("LORAFLOW_ENGINE__MAX_LORA_RANK", "64")
    monkeypatch.setenv("LORAFLOW_ENGINE__URLS", '["http://engine:8000"]')  # the gateway's; ignored here
    monkeypatch.setenv("LORAFLOW_SCHEDULER__SYNC_INTERVAL_S", "5")
    settings = load_settings()
    assert settings.url == "http://gateway:8000"
    assert settings.sqlalchemy_url == "postgresql://u@db/loraflow"
    assert settings.engine.max_lora_rank == 64 and settings.scheduler.sync_interval_s == 5


def test_admin_key_from_a_mounted_secret(monkeypatch, tmp_path: Path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "LORAFLOW_ADMIN_KEY").write_text("from-a-file")
    monkeypatch.setenv("LORAFLOW_SECRETS_DIR", str(secrets))
    assert load_settings().admin_secret() == "from-a-file"


def test_admin_key_from_the_development_key_file(tmp_path: Path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "admin-key").write_text("lf_admin_dev\n")
    assert load_settings().admin_secret() == "lf_admin_dev"


def test_production_needs_an_admin_key(monkeypatch):
    monkeypatch.setenv("LORAFLOW_ENV", "production")
    with pytest.raises(ValueError, match="LORAFLOW_ADMIN_KEY"):
        load_settings()


def test_no_admin_key_says_how_to_get_one():
    with pytest.raises(RuntimeError, match="set LORAFLOW_ADMIN_KEY"):
        load_settings().admin_secret()


def test_tenant_defaults_are_nightly_utc_exact_match():
    settings = TenantTrainingSettings.of({"retention_days": 30})  # other parts' keys are not ours
    schedule = settings.schedule
    assert (schedule.cron, schedule.timezone, schedule.adapters, schedule.enabled) == ("0 3 * * *", "UTC", None, True)
    assert settings.evaluation.scorer == "exact" and settings.evaluation.held_out_fraction == 0.2
    assert settings.training.method == "sft" and settings.min_new_ratings == 20


def test_tenant_settings_are_read_from_their_keys():
    settings = TenantTrainingSettings.of({
        "training": {"epochs": 5, "learning_rate": 2e-3},
        "schedule": {"cron": "15 1 * * *", "timezone": "Europe/Paris", "adapters": ["support"]},
        "evaluation": {"scorer": "json_equal", "gate": {"min_items": 10}},
        "min_new_ratings": 5,
    })  # fmt: skip
    assert settings.training.epochs == 5 and settings.schedule.timezone == "Europe/Paris"
    assert settings.evaluation.gate.min_items == 10 and settings.min_new_ratings == 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"training": {"rank": 0}}, "training.rank"),
        ({"training": {"epoch": 3}}, "training.epoch: Extra inputs are not permitted"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "unknown time zone 'Mars/Olympus'"),
        ({"schedule": {"cron": "nightly"}}, "bad cron line 'nightly'"),
        ({"evaluation": {"scorer": "regex"}}, "scorer 'regex' cannot score held-out items"),
        ({"evaluation": {"scorer": "judge"}}, "needs evaluation.judge"),
        ({"evaluation": {"held_out_fraction": 1.5}}, "evaluation.held_out_fraction"),
    ],
)
def test_bad_tenant_settings_name_the_setting(settings, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        TenantTrainingSettings.of(settings)


def test_a_judge_makes_the_judge_scorer_available():
    settings = TenantTrainingSettings.of(
        {"evaluation": {"scorer": "judge", "judge": {"base_url": "http://judge/v1", "model": "m"}}}
    )
    assert settings.evaluation.judge is not None and settings.evaluation.judge.scale == "binary"
