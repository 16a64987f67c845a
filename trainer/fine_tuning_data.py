"""A fine-tuning job's inputs and outputs in the trainer's terms: the lines of its files (OpenAI's formats, checked by
the gateway) as the records the recipes train on; its hyperparameters as a `TrainingConfig`; its metrics as OpenAI's
results CSV.

Hyperparameters (OpenAI → `TrainingConfig`), over the tenant's `training` settings:

    n_epochs                  → epochs              "auto": the tenant's `epochs` (3 by default)
    batch_size                → batch_size          "auto": the tenant's `batch_size` (8), at most the example count
    learning_rate_multiplier  → learning_rate       the tenant's `learning_rate` (1e-3) times it; "auto": 1
    beta (dpo)                → dpo_beta            "auto": the tenant's `dpo_beta` (0.1)
    seed                      → seed
    method supervised | dpo   → method sft | dpo

A job trains all its epochs (no `max_steps`, no early stop). Continuing an adapter keeps that adapter's rank, alpha
and target modules; rank, target modules, `max_seq_length`, `cpu_threads` otherwise come from the tenant's settings.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainer.config import TrainingConfig

RESULT_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def read_records(path: Path, method: str) -> list[dict[str, Any]]:
    """The file's lines as training records. A chat line teaches each of its assistant messages whose `weight` is
    1 (the default), each from the conversation before it: one record per message learned."""
    records: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.strip():
                continue
            line = json.loads(raw)
            if method == "dpo" or "messages" not in line:
                records.append(line)  # preference pairs and the completion format go as they are
                continue
            records.extend(_learned(line))
    return records


def _learned(line: dict[str, Any]) -> Iterable[dict[str, Any]]:
    messages = [{key: value for key, value in message.items() if key != "weight"} for message in line["messages"]]
    for index, message in enumerate(line["messages"]):
        if message["role"] == "assistant" and message.get("weight", 1) == 1:
            record: dict[str, Any] = {"messages": messages[: index + 1]}
            if line.get("tools"):
                record["tools"] = line["tools"]
            yield record


def training_config(
    tenant: TrainingConfig, method: dict[str, Any], seed: int, examples: int, parent: Path | None
) -> tuple[TrainingConfig, dict[str, Any]]:
    """The job's settings, and OpenAI's `method` with "auto" replaced by the values used."""
    kind = method.get("type", "supervised")
    asked = (method.get(kind) or {}).get("hyperparameters") or {}
    epochs = tenant.epochs if asked.get("n_epochs", "auto") == "auto" else float(asked["n_epochs"])
    batch = (
        min(tenant.batch_size, max(examples, 1)) if asked.get("batch_size", "auto") == "auto" else asked["batch_size"]
    )
    multiplier = 1.0 if asked.get("learning_rate_multiplier", "auto") == "auto" else asked["learning_rate_multiplier"]
    beta = tenant.dpo_beta if asked.get("beta", "auto") == "auto" else float(asked["beta"])
    update: dict[str, Any] = {
        "method": "dpo" if kind == "dpo" else "sft",
        "epochs": epochs,
        "batch_size": batch,
        "learning_rate": tenant.learning_rate * multiplier,
        "dpo_beta": beta,
        "seed": seed,
        "start_from": "production" if parent is not None else "scratch",  # `production`: continue the parent
        "max_steps": None,  # a job trains its n_epochs
    }
    if "early_stopping_patience" in TrainingConfig.model_fields:
        update["early_stopping_patience"] = None
    if parent is not None:  # continue the adapter as it is shaped
        saved = json.loads((parent / "adapter_config.json").read_text())
        update.update(rank=saved["r"], alpha=saved["lora_alpha"], target_modules=tuple(sorted(saved["target_modules"])))
    config = TrainingConfig.model_validate({**tenant.model_dump(), **update})
    used = {"n_epochs": round(epochs), "batch_size": batch, "learning_rate_multiplier": multiplier}
    if kind == "dpo":
        used["beta"] = beta
    return config, {"type": kind, kind: {"hyperparameters": used}}


def results_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """One line per step in OpenAI's columns; a value not measured at that step is left empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row[key]) for key in RESULT_COLUMNS})
    return out.getvalue().encode()
