"""The benchmark that keeps the completion routes' short way measured still runs, and both ways answer."""

from __future__ import annotations

import asyncio

from bench import completion_route


def test_both_ways_answer_and_are_timed():
    times = asyncio.run(completion_route.measure(20))

    assert set(times) == {"dispatch", "fastapi"}
    assert all(len(values) == 20 and min(values) > 0 for values in times.values())
