"""Training settings: defaults, stored JSON, and the engine check that runs before any training."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainer.config import DEFAULT_TARGET_MODULES, ConfigError, TrainingConfig, check_engine_limits

VLLM_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_defaults_are_what_the_demo_measurements_suggest():
    config = TrainingConfig()
    assert (config.method, config.rank, config.alpha, config.learning_rate, config.batch_size, config.epochs) == (
        "sft",
        16,
        32.0,
        1e-3,
        8,
        3.0,
    )
    assert config.target_modules == DEFAULT_TARGET_MODULES
    assert config.start_from == "production" and config.device == "auto"


def test_every_field_carries_help_text():
    assert all(field.description for field in TrainingConfig.model_fields.values())


def test_stored_json_round_trips_and_lists_become_tuples():
    stored = '{"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "epochs": 5}'
    config = TrainingConfig.model_validate_json(stored)
    assert config.target_modules == ("q_proj", "v_proj")
    assert TrainingConfig.model_validate_json(config.model_dump_json()) == config


def test_unknown_or_bad_settings_are_refused():
    with pytest.raises(ValidationError, match="rnak"):
        TrainingConfig.model_validate({"rnak": 8})
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainingConfig(learning_rate=0)
    with pytest.raises(ValidationError, match="duplicates"):
        TrainingConfig(target_modules=("q_proj", "q_proj"))
    with pytest.raises(ValidationError, match="batch_size >= 2"):
        TrainingConfig(method="kto", batch_size=1)


def test_rank_above_the_engine_max_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match=r"rank 64 is above the engine's max LoRA rank 16"):
        check_engine_limits(TrainingConfig(rank=64, alpha=128), max_rank=16, supported_modules=VLLM_MODULES)


def test_modules_the_engine_cannot_serve_are_refused_by_name():
    config = TrainingConfig(target_modules=("q_proj", "lm_head", "embed_tokens"))
    with pytest.raises(ConfigError, match=r"\['lm_head', 'embed_tokens'\] are not supported"):
        check_engine_limits(config, max_rank=64, supported_modules=VLLM_MODULES)


def test_both_problems_are_reported_at_once():
    config = TrainingConfig(rank=32, target_modules=("lm_head",))
    with pytest.raises(ConfigError) as error:
        check_engine_limits(config, max_rank=16, supported_modules=VLLM_MODULES)
    assert "rank 32" in str(error.value) and "lm_head" in str(error.value)


def test_defaults_pass_the_check_for_the_demo_engine():
    check_engine_limits(TrainingConfig(), max_rank=16, supported_modules=VLLM_MODULES)
