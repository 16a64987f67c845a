"""The admin API's stats over time (what the console draws): ratings per version per day, requests per alias per hour;
another tenant's id or an unknown one is 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.gateway.conftest import BASE, fake_adapter


def test_ratings_and_requests_over_time(env, tmp_path):
    key = env.tenant_with_key("acme")
    headers = {"Authorization": f"Bearer {key}"}
    env.register("acme", "support", fake_adapter(tmp_path / "v1"))
    env.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1})
    messages = [{"role": "user", "content": "hi"}]
    ids = [
        env.client.post("/v1/chat/completions", json={"model": model, "messages": messages}, headers=headers).json()[
            "id"
        ]
        for model in ("support", "support", BASE)
    ]
    for completion_id, rating in zip(ids, ("up", "down", "up"), strict=True):
        assert env.client.post("/v1/feedback", json={"completion_id": completion_id, "rating": rating},
                               headers=headers).status_code == 201  # fmt: skip
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    ratings = env.admin("GET", "/tenants/acme/stats/ratings", params={"since": since}).json()
    by_model = {row["model"]: row for row in ratings["data"]}
    assert ratings["bucket_s"] == 86400 and set(by_model) == {"support@1", BASE}
    assert (by_model["support@1"]["ratings"], by_model["support@1"]["up_rate"]) == (2, 0.5)
    assert 0 < by_model["support@1"]["up_rate_low"] < 0.5 < by_model["support@1"]["up_rate_high"] < 1
    only = env.admin("GET", "/tenants/acme/stats/ratings", params={"since": since, "alias": "support"}).json()
    assert [row["model"] for row in only["data"]] == ["support@1"]

    requests = env.admin("GET", "/tenants/acme/stats/requests", params={"since": since}).json()["data"]
    assert sorted((row["alias"] or "", row["requests"]) for row in requests) == [("", 1), ("support", 2)]
    assert env.admin("GET", "/tenants/nobody/stats/requests", params={"since": since}).status_code == 404
    assert env.admin("GET", "/tenants/acme/stats/requests", params={"since": since, "bucket_s": 1}).status_code == 400
