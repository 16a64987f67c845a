"""Promoting a fine-tuning job's model through the evaluation gate, as the nightly runs promote theirs: the model is
staged as the alias's next version, it and the alias's production (or the base model) answer the same items through
the gateway — the job's validation file (its assistant answers expected) and the alias's golden set — and the gate
decides: promote, hold for review (left staged), or reject (retired). Production is untouched unless it promotes.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.evaluation import evaluate
from trainer.gate import GateDecision, decide, split_pairs
from trainer.gateway_client import GatewayClient
from trainer.scorers import EvalItem, load_golden, registry
from trainer.stages import judge_for, scorer_names
from trainer.tenant_settings import TenantTrainingSettings


@dataclass(frozen=True)
class GateOutcome:
    decision: GateDecision
    candidate: str  # `support@4`
    incumbent: str  # `support@3`, or the base model


def gate_job(client: GatewayClient, tenant: str, job_id: str, alias: str) -> GateOutcome:
    settings = TenantTrainingSettings.of(client.tenant(tenant).get("settings"))
    evaluation = settings.evaluation
    job = client.tenant_job(tenant, job_id)
    items = validation_items(client, job, evaluation.scorer)
    items += load_golden(client.golden(tenant, alias), scorer_names(settings))
    production = (client.adapter(tenant, alias) or {}).get("production")
    candidate = client.promote_job(tenant, job_id, alias, promote=False)
    key_id, key = client.create_key(tenant, f"gate for {job_id}", record=False)
    judge = judge_for(settings)
    try:
        with client.openai(key) as openai_client:
            incumbent = production or openai_client.models.list().data[0].id  # first entry: the base model
            scored = evaluate(
                openai_client, items, candidate=candidate["id"], incumbent=incumbent, scorers=registry(judge),
                max_tokens=evaluation.max_tokens, concurrency=evaluation.concurrency,
            )  # fmt: skip
    finally:
        client.revoke_key(tenant, key_id)
        if judge is not None:
            judge.close()
    held_out, golden = split_pairs(scored.items, scored.candidate, scored.incumbent)
    decision = decide(held_out, golden, evaluation.gate, incumbent="production" if production else "base")
    reason = f"fine-tuning job {job_id} ({job.get('fine_tuned_model')}): {decision.reason}"
    if decision.decision == "promote":
        client.promote(tenant, alias, int(candidate["version"]), reason)
    elif decision.decision == "reject":
        client.retire(tenant, alias, int(candidate["version"]))
    return GateOutcome(decision, candidate["id"], incumbent)


def validation_items(client: GatewayClient, job: dict[str, Any], scorer: str) -> list[EvalItem]:
    """The job's validation file as held-out items: a chat line's last assistant answer is expected from what came
    before it; a preference line's preferred answer is expected and the other one scores 0."""
    if not job.get("validation_file"):
        return []
    with tempfile.TemporaryDirectory(prefix="loraflow-gate-") as scratch:
        path = client.job_file(job, job["validation_file"], Path(scratch) / "validation.jsonl")
        lines = [json.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]
    items = []
    for line in lines:
        if "messages" in line:
            *prompt, last = [{k: v for k, v in m.items() if k != "weight"} for m in line["messages"]]
            if last.get("role") == "assistant" and isinstance(last.get("content"), str) and prompt:
                items.append(EvalItem(input=prompt, expected=last["content"], scorer=scorer, split="held_out"))
        elif "input" in line:
            preferred, other = line["preferred_output"][0], line["non_preferred_output"][0]
            items.append(EvalItem(input=line["input"]["messages"], expected=preferred.get("content"), scorer=scorer,
                                  rejected=other.get("content"), split="held_out"))  # fmt: skip
    return items
