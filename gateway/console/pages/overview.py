"""The overview: every tenant the viewer sees with its requests, tokens and 👍 rate over the last day and week; the
engines and their state (admin only: they are shared by every tenant); runs in progress and the latest decisions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from feedback.stats import TenantTotals, tenant_totals
from gateway import tenants
from gateway.console.sessions import Viewer
from gateway.state import Gateway
from gateway.store.models import utcnow
from gateway.training_api import runs

DECIDED = "promoted,rejected,failed,held,canary"  # runs whose decision a person may want to read


def overview(gw: Gateway, viewer: Viewer) -> dict[str, Any]:
    now = utcnow()
    with gw.sessions() as session:
        if viewer.tenant_id is None:
            rows = tenants.list_tenants(session)
        else:
            rows = [tenants.get_tenant(session, viewer.tenant_id)]
    lease = gw.settings.training.lease_s
    # A session each: `list_runs` expires lost runs with an UPDATE that must not meet rows loaded by the other.
    with gw.sessions() as session:
        running = runs.list_runs(session, lease, viewer.tenant_id, status="running", limit=50)
    with gw.sessions() as session:
        held = runs.list_runs(session, lease, viewer.tenant_id, status="held", limit=50)
    with gw.sessions() as session:
        finished = runs.list_runs(session, lease, viewer.tenant_id, status=DECIDED, limit=8)
    day = tenant_totals(gw.db, since=now - timedelta(days=1), tenant_id=viewer.tenant_id)
    week = tenant_totals(gw.db, since=now - timedelta(days=7), tenant_id=viewer.tenant_id)
    catalog = gw.catalog.current
    table = [
        {
            "id": row.id,
            "name": row.name,
            "aliases": len(catalog.tenant_aliases(row.id)),
            "day": day.get(row.id) or TenantTotals(row.id, 0, 0, 0, 0),
            "week": week.get(row.id) or TenantTotals(row.id, 0, 0, 0, 0),
        }
        for row in rows
    ]
    engines = [
        {
            "url": engine.url,
            "state": "ready" if engine.ready else ("loading adapters" if engine.up else "down"),
            "loaded": len(engine.loaded),
            "missing": len(engine.missing),
            "inflight": engine.inflight,
        }
        for engine in gw.pool.engines
    ]
    return {
        "tenants": table,
        "engines": engines if viewer.is_admin else [],
        "engines_ready": sum(1 for e in gw.pool.engines if e.ready),
        "engines_total": len(gw.pool.engines),
        "running": running,
        "held": held,
        "finished": finished,
        "base_model": gw.settings.public_model_name,
    }
