"""A tenant's page: its aliases with the version each serves, 👍 rate per version with its Wilson interval, request
volume; its keys; its recent runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feedback.stats import adapter_stats, tenant_totals
from gateway import registry, tenants
from gateway.console.pages.charts import rating_chart, request_chart
from gateway.console.sessions import Viewer
from gateway.state import Gateway
from gateway.store.models import utcnow
from gateway.training_api import runs


def tenant_page(gw: Gateway, viewer: Viewer, tenant_id: str) -> dict[str, Any]:
    now = utcnow()
    base = gw.settings.public_model_name
    stats = {s.adapter_version: s for s in adapter_stats(gw.db, tenant_id)}
    with gw.sessions() as session:
        tenant = tenants.get_tenant(session, tenant_id)
        adapters = registry.list_adapters(session, tenant_id)
        aliases = []
        for adapter in adapters:
            versions = registry.list_versions(session, adapter)
            production = next((v for v in versions if v.id == adapter.production_version_id), None)
            aliases.append(
                {
                    "alias": adapter.alias,
                    "production": f"{adapter.alias}@{production.number}" if production else None,
                    "versions": [
                        {
                            "name": f"{adapter.alias}@{v.number}",
                            "state": v.state,
                            "stats": stats.get(f"{adapter.alias}@{v.number}"),
                        }
                        for v in reversed(versions)
                    ],
                }
            )
        rating = rating_chart(gw, session, tenant_id, adapters, now)
        keys = tenants.list_keys(session, tenant_id)
        recent = runs.list_runs(session, gw.settings.training.lease_s, tenant_id, limit=10)
    week = tenant_totals(gw.db, since=now - timedelta(days=7), tenant_id=tenant_id).get(tenant_id)
    return {
        "tenant": tenant,
        "aliases": aliases,
        "base_stats": stats.get(None),
        "base_model": base,
        "rating_chart": rating,
        "request_chart": request_chart(gw, tenant_id, now),
        "keys": keys,
        "runs": recent,
        "week": week,
    }
