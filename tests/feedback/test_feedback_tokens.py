"""Feedback tokens: valid for one completion of one tenant, for a limited time, and only as issued."""

from __future__ import annotations

import time

import pytest

from feedback.errors import ExpiredToken, InvalidToken
from feedback.tokens import PREFIX, FeedbackTokens


def test_a_token_names_its_tenant_and_completion():
    tokens = FeedbackTokens("secret", ttl_s=60)
    token = tokens.issue("acme", "chatcmpl-1")
    assert token.startswith(PREFIX) and token.isascii() and len(token) < 200
    assert tokens.verify(token) == ("acme", "chatcmpl-1")
    assert tokens.verify(token, completion_id="chatcmpl-1") == ("acme", "chatcmpl-1")


def test_a_token_for_another_completion_is_refused():
    tokens = FeedbackTokens("secret", ttl_s=60)
    with pytest.raises(InvalidToken):
        tokens.verify(tokens.issue("acme", "chatcmpl-1"), completion_id="chatcmpl-2")


def test_an_expired_token_is_refused(monkeypatch):
    tokens = FeedbackTokens("secret", ttl_s=60)
    token = tokens.issue("acme", "chatcmpl-1")
    later = time.time() + 120
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    with pytest.raises(ExpiredToken):
        tokens.verify(token)


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.replace(PREFIX, ""),  # no prefix: could be an API key
        lambda t: PREFIX + "e30.AAAAAA.BBBBBB",  # forged
        lambda t: "",
        lambda t: FeedbackTokens("another secret", ttl_s=60).issue("acme", "chatcmpl-1"),
    ],
)
def test_altered_or_foreign_tokens_are_refused(alter):
    tokens = FeedbackTokens("secret", ttl_s=60)
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(alter(tokens.issue("acme", "chatcmpl-1")))
    assert not isinstance(caught.value, ExpiredToken)
