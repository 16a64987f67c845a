"""A person's verdict on a run the gate held for review (trainer/gate.py): approve promotes its candidate, reject
retires it; production is untouched until then. Only a held run can be judged, once (a guarded UPDATE: two people
clicking at once get one verdict and one 409), and an approval is refused when production changed since the run
compared against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import CursorResult, update

from gateway import registry
from gateway.errors import Conflict
from gateway.state import Gateway
from gateway.store.models import TrainingRun, utcnow
from gateway.training_api import runs

Verdict = Literal["approve", "reject"]


@dataclass(frozen=True)
class _Held:
    alias: str
    number: int
    status: str
    reason: str
    report_markdown: str


async def review(gw: Gateway, tenant_id: str, run_id: str, verdict: Verdict, reason: str) -> TrainingRun:
    held = await run_in_threadpool(_claim, gw, tenant_id, run_id, verdict, reason)
    try:
        if verdict == "approve":
            why = f"{run_id} approved by a person" + (f": {reason}" if reason else "")
            await gw.adapters.promote(tenant_id, held.alias, held.number, why)
        else:
            await gw.adapters.retire(tenant_id, held.alias, held.number)
    except Exception:
        await run_in_threadpool(_unclaim, gw, run_id, held)
        raise
    return await run_in_threadpool(_read, gw, tenant_id, run_id)


def _claim(gw: Gateway, tenant_id: str, run_id: str, verdict: Verdict, reason: str) -> _Held:
    with gw.sessions() as session:
        run = runs.get_run(session, tenant_id, run_id)
        if run.status != "held":
            raise Conflict(f"Run {run_id} is {run.status}, not held for review.", code="run_not_held")
        alias, _, number = (run.candidate or "").rpartition("@")
        if not alias or not number.isdigit():
            raise Conflict(f"Run {run_id} has no candidate to judge.", code="run_not_held")
        if verdict == "approve":
            compared = (run.report or {}).get("production_version")
            adapter = registry.get_adapter(session, tenant_id, alias)
            now = next(
                (f"{alias}@{v.number}" for v in registry.list_versions(session, adapter)
                 if v.id == adapter.production_version_id),
                None,
            )  # fmt: skip
            if now != compared:
                raise Conflict(
                    f"Production changed since run {run_id} compared against it ({compared or 'base model'} -> "
                    f"{now or 'base model'}): reject it, and let the next run compare with the new production.",
                    code="stale_run",
                )
        held = _Held(alias, int(number), run.status, run.reason, run.report_markdown)
        status = "promoted" if verdict == "approve" else "rejected"
        said = f": {reason}" if reason else ""
        new_reason = f"{status}: {verdict}d by a person{said} (the gate: {run.reason})"
        review = f"\n## Review\n\n{verdict.capitalize()}d by a person at {utcnow():%Y-%m-%d %H:%M} UTC{said}.\n"
        guarded = (
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == "held")
            .values(status=status, reason=new_reason[:2000], report_markdown=run.report_markdown + review)
        )
        if cast("CursorResult[Any]", session.execute(guarded)).rowcount != 1:
            session.rollback()
            raise Conflict(f"Run {run_id} was judged by someone else meanwhile.", code="run_not_held")
        session.commit()
        return held


def _unclaim(gw: Gateway, run_id: str, held: _Held) -> None:
    """The promotion or retirement failed: the run is held again, as it was."""
    with gw.sessions() as session:
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id)
            .values(status=held.status, reason=held.reason, report_markdown=held.report_markdown)
        )
        session.commit()


def _read(gw: Gateway, tenant_id: str, run_id: str) -> TrainingRun:
    with gw.sessions() as session:
        return runs.get_run(session, tenant_id, run_id)
