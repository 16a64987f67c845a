"""Completion ids: OpenAI's shape, unique, and growing with time (cheap to append to the record's index)."""

from __future__ import annotations

import re
import time

from gateway.openai.completion_ids import new_completion_id


def test_ids_have_openais_prefix_and_32_hex_digits():
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", new_completion_id("chat"))
    assert re.fullmatch(r"cmpl-[0-9a-f]{32}", new_completion_id("completion"))


def test_ids_made_later_sort_later_and_never_repeat():
    made = []
    for _ in range(5):
        made.extend(new_completion_id("chat") for _ in range(1000))
        time.sleep(0.002)
    assert len(set(made)) == len(made)
    # Within one millisecond the order is random; across milliseconds it is the order they were made in.
    first_of_each_ms = {}
    for position, completion_id in enumerate(made):
        first_of_each_ms.setdefault(completion_id[9:21], position)
    assert list(first_of_each_ms) == sorted(first_of_each_ms)
