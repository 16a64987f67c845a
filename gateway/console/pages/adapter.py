"""An adapter alias's page: its versions as a timeline with lineage (parent, dataset, counts, settings, loss, base
model), state and scores, the 👍 rate of each over time; and what a promotion or a rollback would change."""

from __future__ import annotations

from typing import Any

from feedback.stats import AdapterStats, adapter_stats
from gateway import registry
from gateway.console.pages.charts import rating_chart, request_chart
from gateway.console.sessions import Viewer
from gateway.errors import Conflict
from gateway.state import Gateway
from gateway.store.models import AdapterVersion, TrainingRun, utcnow
from gateway.training_api import runs


def adapter_page(gw: Gateway, viewer: Viewer, tenant_id: str, alias: str) -> dict[str, Any]:
    now = utcnow()
    stats = _stats(gw, tenant_id)
    with gw.sessions() as session:
        adapter = registry.get_adapter(session, tenant_id, alias)
        versions = registry.list_versions(session, adapter)
        numbers = {v.id: v.number for v in versions}
        promotions = [
            {
                "kind": p.kind,
                "from": f"{alias}@{numbers[p.from_version_id]}" if p.from_version_id in numbers else "base model",
                "to": f"{alias}@{numbers.get(p.to_version_id, '?')}",
                "reason": p.reason,
                "at": p.created_at,
            }
            for p in reversed(registry.list_promotions(session, adapter))
        ]
        alias_runs = runs.list_runs(session, gw.settings.training.lease_s, tenant_id, adapter=alias, limit=200)
        rating = rating_chart(gw, session, tenant_id, [adapter], now)
        try:
            rollback_to: int | None = registry.rollback_target(session, adapter).number
        except Conflict:
            rollback_to = None
    by_candidate = {run.candidate: run for run in alias_runs if run.candidate}
    production = next((v for v in versions if v.id == adapter.production_version_id), None)
    timeline = [_version(v, alias, stats, by_candidate.get(f"{alias}@{v.number}")) for v in reversed(versions)]
    entry = gw.catalog.current.aliases.get((tenant_id, alias))
    canary = entry.canary if entry is not None else None
    return {
        "alias": alias,
        "canary": {"candidate": canary.candidate.public_name, "share": canary.share} if canary else None,
        "production": f"{alias}@{production.number}" if production else None,
        "production_number": production.number if production else None,
        "timeline": timeline,
        "promotions": promotions,
        "runs": alias_runs[:10],
        "rollback_to": rollback_to,
        "rating_chart": rating,
        "request_chart": request_chart(gw, tenant_id, now, alias),
        "base_model": gw.settings.public_model_name,
        "base_stats": stats.get(None),
    }


def change_preview(gw: Gateway, tenant_id: str, alias: str, number: int | None) -> dict[str, Any]:
    """What a promotion of `number` (None: a rollback) would change, for the confirmation page."""
    stats = _stats(gw, tenant_id)
    with gw.sessions() as session:
        adapter = registry.get_adapter(session, tenant_id, alias)
        versions = {v.number: v for v in registry.list_versions(session, adapter)}
        target = registry.rollback_target(session, adapter) if number is None else None
        if target is None:
            target = registry.get_version(session, tenant_id, alias, number or 0)
    current = next((v for v in versions.values() if v.id == adapter.production_version_id), None)
    if current is not None and current.id == target.id:
        raise Conflict(f"{alias}@{target.number} already serves `{alias}`.")
    name = f"{alias}@{target.number}"
    return {
        "alias": alias,
        "kind": "rollback" if number is None else "promote",
        "target": name,
        "target_number": target.number,
        "target_state": target.state,
        "target_stats": stats.get(name),
        "current": f"{alias}@{current.number}" if current else None,
        "current_stats": stats.get(f"{alias}@{current.number}") if current else stats.get(None),
        "base_model": gw.settings.public_model_name,
    }


def _stats(gw: Gateway, tenant_id: str) -> dict[str | None, AdapterStats]:
    return {s.adapter_version: s for s in adapter_stats(gw.db, tenant_id)}


def _version(v: AdapterVersion, alias: str, stats: dict[str | None, AdapterStats], run: TrainingRun | None) -> dict:
    lineage = v.lineage or {}
    loss = lineage.get("training_loss") or {}
    held_out = None
    if run is not None:
        held_out = next((row for row in (run.report or {}).get("scores", []) if row.get("split") == "held_out"), None)
    return {
        "name": f"{alias}@{v.number}",
        "number": v.number,
        "state": v.state,
        "created_at": v.created_at,
        "promoted_at": v.promoted_at,
        "retired_at": v.retired_at,
        "rank": v.rank,
        "alpha": v.alpha,
        "base_model": lineage.get("base_model") or v.base_model,
        "parent": lineage.get("parent"),
        "dataset_hash": lineage.get("dataset_hash"),
        "examples": lineage.get("examples") or {},
        "settings": lineage.get("settings") or {},
        "method": lineage.get("method"),
        "final_loss": loss.get("final"),
        "mean_loss": loss.get("mean"),
        "steps": lineage.get("steps"),
        "lineage": lineage,
        "stats": stats.get(f"{alias}@{v.number}"),
        "run": run,
        "held_out": held_out,
    }
