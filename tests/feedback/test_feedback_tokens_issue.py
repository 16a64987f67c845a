"""The feedback token's own issuer makes exactly the token itsdangerous makes (which is what verifies it)."""

from __future__ import annotations

import time

import pytest

from feedback.tokens import PREFIX, FeedbackTokens


@pytest.mark.parametrize(
    ("tenant", "completion_id"),
    [
        ("acme", "chatcmpl-0193a4b5c6d7e8f90123456789abcdef"),
        ("a" * 64, "cmpl-" + "0" * 32),  # a payload that compresses: the "." form
        ("été-ü", "chatcmpl-x"),  # not ASCII: UTF-8 in the payload, as itsdangerous writes it
    ],
)
@pytest.mark.parametrize("secret", ["test-secret", b"\x00bytes-secret"])
def test_issued_tokens_are_byte_for_byte_itsdangerous_ones(monkeypatch, tenant, completion_id, secret):
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.7)
    tokens = FeedbackTokens(secret, ttl_s=3600)
    issued = tokens.issue(tenant, completion_id)
    assert issued == PREFIX + tokens._serializer.dumps([tenant, completion_id])
    monkeypatch.undo()
    assert FeedbackTokens(secret, ttl_s=10**9).verify(issued, completion_id) == (tenant, completion_id)
