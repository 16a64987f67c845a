"""A fine-tuning job's inputs and outputs in the trainer's terms: records from OpenAI's formats (weights, tools),
OpenAI's hyperparameters as a TrainingConfig ("auto" included), the metrics CSV in OpenAI's columns."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.config import TrainingConfig
from trainer.examples import dpo_rows, sft_rows
from trainer.fine_tuning_data import read_records, results_csv, training_config

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def write(tmp_path: Path, lines: list[dict]) -> Path:
    path = tmp_path / "file.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    return path


def test_each_assistant_message_of_weight_1_is_one_record_learned_from_the_conversation_before_it(tmp_path: Path):
    line = {"messages": [USER, {"role": "assistant", "content": "draft", "weight": 0}, USER,
                         {"role": "assistant", "content": "one"}, USER,
                         {"role": "assistant", "content": "two", "weight": 1}], "tools": [TOOL]}  # fmt: skip

    records = read_records(write(tmp_path, [line]), "supervised")

    assert [record["messages"][-1]["content"] for record in records] == ["one", "two"]
    assert all("weight" not in message for record in records for message in record["messages"])
    assert len(records[0]["messages"]) == 4 and records[0]["tools"] == [TOOL]
    rows = sft_rows(records)
    assert rows[1]["completion"] == [{"role": "assistant", "content": "two"}]
    assert json.loads(rows[0]["tools"]) == [TOOL]  # carried to the chat template


def test_tool_calls_are_kept_and_rows_without_tools_get_the_column(tmp_path: Path):
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    calling = {"role": "assistant", "content": None, "tool_calls": [call]}
    lines = [
        {"messages": [USER, {"role": "assistant", "content": "plain"}]},
        {"messages": [USER, calling], "tools": [TOOL]},
    ]

    rows = sft_rows(read_records(write(tmp_path, lines), "supervised"))

    assert [row["tools"] is None for row in rows] == [True, False]
    assert rows[1]["completion"][0]["tool_calls"] == [call]


def test_preference_lines_are_dpo_rows(tmp_path: Path):
    line = {
        "input": {"messages": [USER], "tools": [TOOL]},
        "preferred_output": [{"role": "assistant", "content": "yes"}],
        "non_preferred_output": [{"role": "assistant", "content": "no"}],
    }

    rows = dpo_rows(read_records(write(tmp_path, [line]), "dpo"))

    assert rows == [{"prompt": [USER], "chosen": [{"role": "assistant", "content": "yes"}],
                     "rejected": [{"role": "assistant", "content": "no"}], "tools": json.dumps([TOOL])}]  # fmt: skip


def test_auto_takes_the_tenants_settings_and_numbers_override_them():
    tenant = TrainingConfig(epochs=5, batch_size=8, learning_rate=2e-3, max_steps=7, rank=8)
    auto = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto", "batch_size": "auto"}}}

    config, used = training_config(tenant, auto, seed=11, examples=3, parent=None)

    assert (config.method, config.epochs, config.batch_size, config.learning_rate) == ("sft", 5.0, 3, 2e-3)
    assert (config.seed, config.max_steps, config.start_from, config.rank) == (11, None, "scratch", 8)
    assert used == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 5, "batch_size": 3, "learning_rate_multiplier": 1.0}}}  # fmt: skip

    given = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5,
                                                       "beta": 0.3}}}  # fmt: skip
    config, used = training_config(tenant, given, seed=0, examples=100, parent=None)
    assert (config.method, config.epochs, config.batch_size, config.learning_rate, config.dpo_beta) == (
        "dpo", 2.0, 4, 1e-3, 0.3,
    )  # fmt: skip
    assert used["dpo"]["hyperparameters"]["beta"] == 0.3


def test_continuing_an_adapter_keeps_its_shape(tmp_path: Path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "adapter_config.json").write_text(
        json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["v_proj", "q_proj"]})
    )

    config, _ = training_config(TrainingConfig(rank=16), {"type": "supervised"}, seed=0, examples=10, parent=parent)

    assert (config.rank, config.alpha, config.target_modules, config.start_from) == (
        4, 8, ("q_proj", "v_proj"), "production",
    )  # fmt: skip


def test_the_results_file_has_openais_columns_and_leaves_unmeasured_values_empty():
    csv = results_csv([{"step": 1, "train_loss": 2.5}, {"step": 2, "train_loss": 1.5, "valid_loss": 1.75}])
    assert csv.decode().splitlines() == [
        "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy",
        "1,2.5,,,",
        "2,1.5,,1.75,",
    ]
