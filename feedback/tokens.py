"""Signed, short-lived feedback tokens: let a browser widget rate one completion without the tenant's API key."""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from feedback.errors import ExpiredToken, InvalidToken

PREFIX = "lf_fb_"  # never confused with an API key, in a header, a log line or a leak scanner


class FeedbackTokens:
    """Issue and check tokens for (tenant, completion). `secret` is the gateway's secret key."""

    def __init__(self, secret: str | bytes, ttl_s: int) -> None:
        # The salt keeps these signatures from being valid for any other use of the same secret.
        self._serializer = URLSafeTimedSerializer(
            secret, salt="loraflow.feedback-token", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self._ttl_s = ttl_s

    def issue(self, tenant_id: str, completion_id: str) -> str:
        return PREFIX + self._serializer.dumps([tenant_id, completion_id])

    def verify(self, token: str, completion_id: str | None = None) -> tuple[str, str]:
        """(tenant_id, completion_id) of a token this gateway issued, not expired. With `completion_id`, the
        token must be for that completion. Raises ExpiredToken or InvalidToken (altered, malformed, other)."""
        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise InvalidToken("not a feedback token")
        try:
            payload = self._serializer.loads(token[len(PREFIX) :], max_age=self._ttl_s)
        except SignatureExpired as exc:
            raise ExpiredToken("feedback token expired") from exc
        except BadSignature as exc:
            raise InvalidToken("feedback token is not valid") from exc
        if not (isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)):
            raise InvalidToken("feedback token is not valid")
        tenant_id, token_completion = payload
        if completion_id is not None and completion_id != token_completion:
            raise InvalidToken("this feedback token is for another completion")
        return tenant_id, token_completion
