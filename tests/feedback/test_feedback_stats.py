"""Stats per adapter version: counts, thumbs-up rate and its Wilson interval."""

from __future__ import annotations

import pytest

from feedback.ratings import record_feedback
from feedback.stats import adapter_stats, wilson_interval


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)
    narrow, wide = wilson_interval(800, 1000), wilson_interval(8, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_stats_per_adapter_version(db, seed, make_interaction):
    v1 = [make_interaction(adapter_version="support@1") for _ in range(5)]
    v2 = [make_interaction(adapter_version="support@2") for _ in range(2)]
    base = [make_interaction(adapter_version=None)]
    other = [make_interaction(tenant_id="globex", adapter_version="support@1")]
    seed(*v1, *v2, *base, *other)
    for served, rating in zip(v1, ["up", "up", "up", "down"], strict=False):  # the fifth is not rated
        record_feedback(db, tenant_id="acme", completion_id=served.id, rating=rating)
    record_feedback(db, tenant_id="acme", completion_id=v2[0].id, rating="down", end_user="a")
    record_feedback(db, tenant_id="acme", completion_id=v2[0].id, rating="down", end_user="b")
    record_feedback(db, tenant_id="globex", completion_id=other[0].id, rating="up")

    stats = {s.adapter_version: s for s in adapter_stats(db, "acme")}
    assert set(stats) == {None, "support@1", "support@2"}
    one = stats["support@1"]
    assert (one.interactions, one.ratings, one.up, one.down, one.up_rate) == (5, 4, 3, 1, 0.75)
    assert one.interval == wilson_interval(3, 4)
    two = stats["support@2"]
    assert (two.interactions, two.ratings, two.up, two.up_rate) == (2, 2, 0, 0.0)
    assert stats[None].ratings == 0 and stats[None].up_rate is None and stats[None].to_json()["up_rate_low"] is None
    everyone = {(s.tenant_id, s.adapter_version) for s in adapter_stats(db)}
    assert ("globex", "support@1") in everyone and len(everyone) == 4
