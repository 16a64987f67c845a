"""Golden sets: a tenant's own evaluation items for an adapter alias, which a candidate must not regress on.

The gateway checks only their shape; the trainer knows the scorers and checks their names when it runs.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.errors import BadRequest, NotFound
from gateway.store.models import GoldenSet, utcnow

MAX_ITEMS = 10_000


def parse_jsonl(body: bytes) -> list[dict[str, Any]]:
    """Lines `{"input": str | messages, "expected": any JSON, "scorer": str, ...}`; every bad line named at once."""
    items, problems = [], []
    for number, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            problems.append(f"line {number}: not JSON")
            continue
        if not isinstance(item, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        if not isinstance(item.get("input"), str | list) or not item.get("input"):
            problems.append(f"line {number}: `input` must be a string or a list of messages")
        if "expected" not in item:  # any JSON value: a string, a JSON schema, a list of phrases...
            problems.append(f"line {number}: `expected` is missing")
        if not isinstance(item.get("scorer"), str) or not item.get("scorer"):
            problems.append(f"line {number}: `scorer` must name a scorer")
        items.append(item)
    if problems:
        raise BadRequest("The golden set has bad lines: " + "; ".join(problems[:20]), param="golden")
    if not items:
        raise BadRequest("The golden set is empty.", param="golden")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"A golden set holds at most {MAX_ITEMS} items.", param="golden")
    return items


def put_golden(session: Session, tenant_id: str, alias: str, items: list[dict[str, Any]]) -> int:
    row = session.scalar(select(GoldenSet).where(GoldenSet.tenant_id == tenant_id, GoldenSet.alias == alias))
    if row is None:
        session.add(GoldenSet(tenant_id=tenant_id, alias=alias, items=items))
    else:
        row.items, row.updated_at = items, utcnow()
    session.commit()
    return len(items)


def get_golden(session: Session, tenant_id: str, alias: str) -> list[dict[str, Any]]:
    row = session.scalar(select(GoldenSet).where(GoldenSet.tenant_id == tenant_id, GoldenSet.alias == alias))
    if row is None:
        raise NotFound(f"No golden set for `{alias}` of tenant `{tenant_id}`.", param="alias")
    return row.items
