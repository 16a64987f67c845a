"""The canaries' decision loop. Every replica looks at each running canary every few seconds: the counts per arm
from the record, the same evidence and decision (gateway/canary/decision.py). The replica that wins the guarded claim
applies it (promote the candidate, or retire it), records it with its evidence and ends the canary; the others find
it decided. A person may end one early through the admin API, by the same path. Also what /metrics shows per arm.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session, sessionmaker

from gateway.canary import store
from gateway.canary.decision import CanaryPolicy, Decision, decide
from gateway.canary.sequential import evidence
from gateway.catalog import CatalogHolder
from gateway.errors import Conflict
from gateway.lifecycle import AdapterLifecycle
from gateway.settings import CanaryLoopSettings
from gateway.store.models import Adapter, AdapterVersion, Canary, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Look:
    """One canary as it stands: its arms by name and, while it runs, the decision its counts lead to now."""

    canary_id: str
    tenant_id: str
    alias: str
    status: str
    share: float
    candidate: str  # support@4
    candidate_number: int
    control: str | None  # support@3; None: the base model
    decision: Decision | None  # None: decided already (its evidence is in `recorded`)
    recorded: dict[str, Any]
    stale: str = ""  # why it can no longer run: production changed, or the candidate left, by other means

    def evidence(self) -> dict[str, Any]:
        """What it is decided on: now while it runs, as recorded once decided."""
        return self.decision.to_json() if self.decision is not None else self.recorded


def look(session: Session, canary: Canary) -> Look:
    """The canary and, while it runs, its counts from the record and the decision they lead to."""
    adapter = session.get(Adapter, canary.adapter_id)
    candidate = session.get(AdapterVersion, canary.candidate_version_id)
    control = session.get(AdapterVersion, canary.control_version_id) if canary.control_version_id else None
    assert adapter is not None and candidate is not None
    name = f"{adapter.alias}@{candidate.number}"
    control_name = f"{adapter.alias}@{control.number}" if control is not None else None
    decision, stale = None, ""
    if canary.status in store.ACTIVE:
        policy = CanaryPolicy.of(canary.policy)
        arms = store.counts(
            session.connection(), canary, adapter.tenant_id, adapter.alias, name, control_name, policy.ratings_per_user
        )
        decision = decide(evidence(*arms), policy, store.elapsed_s(canary, utcnow()))
        if adapter.production_version_id == candidate.id:
            stale = f"{name} was promoted by other means"
        elif adapter.production_version_id != canary.control_version_id:
            stale = "production changed by other means"
        elif candidate.state != "staged":
            stale = f"{name} was {candidate.state} by other means"
    return Look(
        canary.id, adapter.tenant_id, adapter.alias, canary.status, canary.share, name, candidate.number,
        control_name, decision, dict(canary.decision or {}), stale,
    )  # fmt: skip


class CanaryDecider:
    """The loop, on every replica; `replica` names this one in the decisions it records."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        adapters: AdapterLifecycle,
        catalog: CatalogHolder,
        settings: CanaryLoopSettings,
        replica: str,
    ) -> None:
        self._sessions = sessions
        self._adapters = adapters
        self._catalog = catalog
        self._settings = settings
        self.replica = replica
        self._shown: list[Look] = []  # each alias's newest canary, for /metrics
        self._decisions: list[tuple[str, str, str, int]] = []  # (tenant, alias, status, count)

    async def run(self) -> None:
        """Until cancelled; the interval is read each time, so it can be changed while running (tests)."""
        while True:
            try:
                await self.tick()
            except Exception:  # one bad round must not end the loop
                log.exception("canary decision round failed")
            await asyncio.sleep(self._settings.interval_s)

    async def tick(self) -> list[str]:
        """One round over the running canaries; the ids of those this replica ended."""
        looks, shown, decisions = await asyncio.to_thread(self._read)
        self._shown, self._decisions = shown, decisions
        ended = []
        for current in looks:
            assert current.decision is not None
            if current.stale:
                outcome: Literal["promote", "rollback", "cancel"] = "cancel"
                reason = f"ended: {current.stale}; {current.decision.reason}"
            elif current.decision.outcome != "continue":
                outcome, reason = current.decision.outcome, current.decision.reason
            else:
                continue
            try:
                if await self._apply(current, outcome, reason, current.decision.to_json()):
                    ended.append(current.canary_id)
            except Exception:
                log.exception("canary %s: could not apply %s", current.canary_id, outcome)
        return ended

    async def stop(self, canary: Look, outcome: Literal["promote", "rollback"], reason: str) -> bool:
        """A person ends a running canary now. False: a replica is applying a decision at this moment."""
        assert canary.decision is not None
        why = f"{outcome} by a person{': ' + reason if reason else ''}; at that point {canary.decision.reason}"
        return await self._apply(canary, outcome, why, {**canary.decision.to_json(), "outcome": outcome})

    async def _apply(
        self, canary: Look, outcome: Literal["promote", "rollback", "cancel"], reason: str, record: dict[str, Any]
    ) -> bool:
        record = {**record, "decided_by": self.replica}
        claimed = await asyncio.to_thread(
            self._write, store.claim, canary.canary_id, self.replica, record, self._settings.claim_stale_s
        )
        if not claimed:
            return False  # another replica decides it
        try:
            if outcome == "promote":
                await self._adapters.promote(
                    canary.tenant_id, canary.alias, canary.candidate_number, f"canary {canary.canary_id}: {reason}"
                )
            elif outcome == "rollback":
                await self._adapters.retire(canary.tenant_id, canary.alias, canary.candidate_number)
        except Exception:
            await asyncio.to_thread(self._write, store.release, canary.canary_id)
            raise
        status = {"promote": "promoted", "rollback": "rolled_back", "cancel": "cancelled"}[outcome]
        if canary.stale.endswith("promoted by other means"):
            status = "promoted"
        await asyncio.to_thread(self._write, store.finish, canary.canary_id, status, reason, record)
        await self._catalog.refresh()
        log.info("canary %s of %s/%s: %s (%s)", canary.canary_id, canary.tenant_id, canary.alias, status, reason)
        return True

    def _read(self) -> tuple[list[Look], list[Look], list[tuple[str, str, str, int]]]:
        with self._sessions() as session:
            looks = [look(session, canary) for canary in store.active(session)]
            running = {current.canary_id: current for current in looks}
            shown = [running.get(c.id) or look(session, c) for c in store.latest_per_alias(session)]
            decisions = []
            for adapter_id, status, count in store.decisions_by_outcome(session):
                adapter = session.get(Adapter, adapter_id)
                if adapter is not None:
                    decisions.append((adapter.tenant_id, adapter.alias, status, count))
        return looks, shown, decisions

    def _write(self, func: Any, *args: Any) -> Any:
        with self._sessions() as session:
            return func(session, *args)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Each alias's newest canary per arm, as of the last round; and how its canaries ended."""
        labels = ["tenant", "alias", "arm"]
        ratings = GaugeMetricFamily(
            "loraflow_canary_ratings", "Ratings counted per arm of the newest canary.", labels=labels
        )
        up = GaugeMetricFamily(
            "loraflow_canary_up_ratio", "Thumbs-up rate per arm of the newest canary.", labels=labels
        )
        share = GaugeMetricFamily(
            "loraflow_canary_share", "Share of the alias's users sent to the candidate (0: none running).",
            labels=["tenant", "alias"],
        )  # fmt: skip
        log_e = GaugeMetricFamily(
            "loraflow_canary_log_evidence", "Log e-value that the candidate is better / worse (decides at threshold).",
            labels=["tenant", "alias", "direction"],
        )  # fmt: skip
        threshold = GaugeMetricFamily(
            "loraflow_canary_threshold", "log(1/alpha): what the log e-value must reach.", labels=["tenant", "alias"]
        )
        ended = GaugeMetricFamily(
            "loraflow_canary_decisions", "Canaries ended, by how.", labels=["tenant", "alias", "outcome"]
        )
        for current in self._shown:
            found = current.evidence()
            if "candidate" not in found:
                continue
            for arm, key in (("candidate", "candidate"), ("production", "control")):
                ratings.add_metric([current.tenant_id, current.alias, arm], found[key]["ratings"])
                rate = found[key]["rate"]
                up.add_metric([current.tenant_id, current.alias, arm], math.nan if rate is None else rate)
            running = current.status in store.ACTIVE
            share.add_metric([current.tenant_id, current.alias], current.share if running else 0.0)
            for direction in ("better", "worse"):
                log_e.add_metric([current.tenant_id, current.alias, direction], found[f"log_e_{direction}"])
            threshold.add_metric([current.tenant_id, current.alias], found.get("threshold", math.nan))
        for tenant, alias, status, count in self._decisions:
            ended.add_metric([tenant, alias, status], count)
        return [ratings, up, share, log_e, threshold, ended]


def stopping_conflict(canary: Look) -> Conflict:
    return Conflict(
        f"Canary {canary.canary_id} is being decided right now; look again in a moment.", code="canary_busy"
    )
