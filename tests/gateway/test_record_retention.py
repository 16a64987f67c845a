"""Retention: a tenant's `retention_days` purges what is older, in a background job that every replica runs at once
(store tests on SQLite and PostgreSQL); and the stats cache behind the Prometheus feedback metrics."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from feedback.bulk import inserter_for
from feedback.interaction import Interaction
from feedback.models import feedback, interactions
from feedback.privacy import Deleted, purge_expired
from feedback.ratings import record_feedback
from gateway import tenants
from gateway.feedback_api.retention import purge_once, retention_of
from gateway.feedback_api.stats_cache import StatsCache
from gateway.store.db import make_sessions
from tests.gateway.record_support import complete, count, gateway, open_env, wait_until

NOW = datetime.now(UTC)


def served(tenant_id: str = "acme", age: timedelta = timedelta(0), **fields) -> Interaction:
    return Interaction(
        id=f"chatcmpl-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="k", model_requested="support",
        adapter_version=fields.pop("adapter_version", "support@1"), endpoint="chat",
        request={"messages": [{"role": "user", "content": "hi"}]}, response_text="hello",
        created_at=NOW - age, **fields,
    )  # fmt: skip


def rows(db, table=interactions, tenant_id: str | None = None) -> int:
    query = select(func.count()).select_from(table)
    if tenant_id is not None:
        query = query.where(table.c.tenant_id == tenant_id)
    with db.connect() as connection:
        return connection.execute(query).scalar_one()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, None),
        ({"retention_days": None}, None),
        ({"retention_days": 30}, timedelta(days=30)),
        ({"retention_days": 0.5}, timedelta(hours=12)),
        ({"retention_days": "7"}, timedelta(days=7)),
    ],
)
def test_retention_of_a_tenant(settings, expected):
    assert retention_of(settings) == expected


@pytest.mark.parametrize("value", [0, -3, "soon", True, [30], float("inf"), "nan"])
def test_a_bad_retention_value_is_refused(value):
    with pytest.raises(ValueError):
        retention_of({"retention_days": value})


def test_purge_once_purges_each_tenant_by_its_own_retention(db):
    sessions = make_sessions(db)
    with sessions() as session:
        tenants.create_tenant(session, "acme", settings={"retention_days": 30})
        tenants.create_tenant(session, "globex")  # keeps everything
        tenants.create_tenant(session, "initech", settings={"retention_days": "soon"})  # refused: nothing purged
    old = [served("acme", timedelta(days=40)) for _ in range(3)]
    recent = served("acme", timedelta(days=3))
    kept = [served(tenant, timedelta(days=400)) for tenant in ("globex", "initech")]
    inserter_for(db).insert(db, [*old, recent, *kept], 5.0)
    record_feedback(db, tenant_id="acme", completion_id=old[0].id, rating="up")
    record_feedback(db, tenant_id="acme", completion_id=recent.id, rating="down")

    assert purge_once(sessions, db) == {"acme": Deleted(interactions=3, feedback=1)}
    assert rows(db, tenant_id="acme") == 1 and rows(db, feedback) == 1
    assert rows(db, tenant_id="globex") == rows(db, tenant_id="initech") == 1
    assert purge_once(sessions, db) == {"acme": Deleted(0, 0)}


def test_purges_running_at_once_share_the_work_and_delete_each_row_once(db):
    """Every replica runs the purge; on PostgreSQL each takes chunks the others have not locked."""
    old = [served("acme", timedelta(days=40)) for _ in range(600)]
    inserter_for(db).insert(db, [*old, served("acme")], 5.0)
    for interaction in old[:90]:
        record_feedback(db, tenant_id="acme", completion_id=interaction.id, rating="up")
    results: list[Deleted] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def replica() -> None:
        try:
            start.wait()
            results.append(purge_expired(db, "acme", timedelta(days=30), chunk=50))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(r.interactions for r in results) == 600 and sum(r.feedback for r in results) == 90
    assert rows(db) == 1 and rows(db, feedback) == 0


def test_the_stats_cache_reads_every_tenant_and_renders_gauges(db):
    liked, disliked = served("acme"), served("acme")
    inserter_for(db).insert(db, [liked, disliked, served("acme", adapter_version=None), served("globex")], 5.0)
    record_feedback(db, tenant_id="acme", completion_id=liked.id, rating="up")
    record_feedback(db, tenant_id="acme", completion_id=disliked.id, rating="down")
    cache = StatsCache(db, base_model="tiny-random")
    assert cache.collect()[0].samples == []  # nothing read yet: no numbers, rather than zeros
    cache.refresh()
    samples = {(m.name, tuple(sorted(s.labels.items()))): s.value for m in cache.collect() for s in m.samples}
    assert samples[("loraflow_record_interactions", (("model", "tiny-random"), ("tenant", "acme")))] == 1
    assert samples[("loraflow_record_interactions", (("model", "support@1"), ("tenant", "globex")))] == 1
    assert samples[("loraflow_record_interactions", (("model", "support@1"), ("tenant", "acme")))] == 2
    assert samples[("loraflow_feedback_up_ratio", (("model", "support@1"), ("tenant", "acme")))] == 0.5
    assert ("loraflow_feedback_up_ratio", (("model", "support@1"), ("tenant", "globex"))) not in samples


def test_the_gateway_purges_in_the_background_once_a_tenant_has_a_retention(tmp_path):
    with open_env(tmp_path, record={"purge_interval_s": 0.1}) as env:
        key = env.tenant_with_key("acme")
        env.tenant_with_key("globex")
        complete(env, key)  # served now: stays
        db = gateway(env).db
        inserter_for(db).insert(db, [served("acme", timedelta(days=40)), served("globex", timedelta(days=400))], 5.0)
        assert count(env) == 3
        response = env.admin("PATCH", "/tenants/acme", json={"settings": {"retention_days": 30}})
        assert response.status_code == 200 and response.json()["settings"]["retention_days"] == 30
        wait_until(lambda: rows(db, tenant_id="acme") == 1)
        assert rows(db, tenant_id="globex") == 1
        metrics = env.client.get("/metrics").text
        assert 'loraflow_record_purged_rows_total{table="interactions"} 1.0' in metrics
