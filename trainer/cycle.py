"""One flywheel run for one tenant's adapter alias, read top to bottom:

lock (start a run at the gateway) → the stages (trainer/stages.py: prepare, dataset, check the ratings, train,
register, stage, evaluate, decide: promote, canary, hold for review, or retire) → the report.

Every failure leaves production untouched: nothing is promoted on an exception path, a registered candidate is
retired, and the run ends `failed` with the reason. A run killed outright stops sending heartbeats, and the gateway
marks it failed after its lease. If the gateway ended the run (lost lease), the run stops before promoting.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from trainer import rated_interactions, stages
from trainer.gateway_client import GatewayClient, GatewayError, RunInProgress
from trainer.recipes import Recipe
from trainer.report import RunReport
from trainer.run_status import RunStatus
from trainer.settings import TrainerSettings
from trainer.stages import Finished, Run, Status, Stopped, Watcher

log = logging.getLogger(__name__)

__all__ = ["Cycle", "Outcome", "Stopped", "Watcher"]


@dataclass
class Outcome:
    """How a run ended. `locked`: another run of the tenant held the lock, so this one never started."""

    status: Status
    reason: str
    run_id: str | None = None
    candidate: str | None = None
    report: RunReport | None = None


class Cycle:
    """Runs cycles for any tenant through one gateway client. `stop`, once set, ends a run at its next step;
    `recipe` replaces the training recipe (tests)."""

    def __init__(
        self,
        settings: TrainerSettings,
        client: GatewayClient,
        *,
        engine: Engine | None = None,
        recipe: Recipe | None = None,
        watcher: Watcher | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.recipe = recipe
        self.watcher = watcher
        self.stop = stop
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The record's database (read-only), connected on first use."""
        if self._engine is None:
            self._engine = rated_interactions.connect(self.settings.sqlalchemy_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def run(self, tenant: str, alias: str, *, trigger: str = "manual", force: bool = False) -> Outcome:
        """One run; `force` trains even with too little new feedback. Never raises for a failed run (its status
        says why), only for Ctrl-C, after the run is marked failed."""
        runner = f"{socket.gethostname()}:{os.getpid()}"
        try:
            started = self.client.start_run(tenant, alias, trigger, runner)
        except RunInProgress as error:
            log.info("%s/%s not started: %s", tenant, alias, error.message)
            return Outcome("locked", error.message)
        run_id = started["id"]
        log.info("%s/%s: run %s started (%s, %s)", tenant, alias, run_id, trigger, runner)
        status = RunStatus(
            self.client,
            tenant,
            run_id,
            heartbeat_s=self.settings.heartbeat_s,
            progress_interval_s=self.settings.progress_interval_s,
        )
        report = RunReport(
            run_id=run_id, tenant=tenant, adapter=alias, status="failed", reason="", started_at=datetime.now(UTC)
        )
        run = Run(
            self.settings, self.client, self.engine, tenant, alias, run_id, force, status, report,
            recipe=self.recipe, watcher=self.watcher, stop=self.stop,
        )  # fmt: skip
        interrupted: BaseException | None = None
        with status:
            try:
                final, reason = run_stages(run)
            except Finished as early:
                final, reason = early.status, early.reason
            except BaseException as error:  # Ctrl-C too: the run is marked failed, then the interrupt goes on
                final, reason = failed(run, error)
                if not isinstance(error, Exception):
                    interrupted = error
            finally:
                revoke_key(run)
            finish(run, final, reason)
        if interrupted is not None:
            raise interrupted
        return Outcome(final, reason, run_id, report.candidate_version, report)


def run_stages(run: Run) -> tuple[Status, str]:
    """The stages in order, each handed what the ones before it produced."""
    plan = stages.prepare(run)
    data = stages.build_dataset(run, plan)
    log.info("%s/%s: %s", run.tenant, run.alias, data.counts.model_dump_json())
    checks = stages.check_ratings(run, plan, data)
    # The incumbent's answers do not depend on the candidate: the engine gives them while the candidate trains.
    incumbent = stages.IncumbentAnswers(run, plan, stages.eval_items(data, checks))
    try:
        trained = stages.train(run, plan, data)
        candidate = stages.register(run, plan, data, trained)
        log.info("%s/%s: registered %s", run.tenant, run.alias, candidate.name)
        stages.stage(run, candidate)
        scored = stages.evaluate_candidate(run, plan, data, candidate, checks, incumbent)
    finally:
        incumbent.close()
    status, reason = stages.decide(run, plan, candidate, scored, checks)
    log.info("%s/%s: %s %s", run.tenant, run.alias, status, candidate.name)
    return status, reason


# Endings.


def failed(run: Run, error: BaseException) -> tuple[Status, str]:
    """The reason a run failed, after making sure production is as it was (or, if a promotion request failed
    after the gateway did promote, saying so)."""
    stage = run.status.current_stage
    what = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
    log.error("%s/%s: run %s failed while %s: %s", run.tenant, run.alias, run.id, stage, what)
    candidate = run.effects.candidate
    if candidate is not None and run.effects.promote_sent and serves(run, candidate.name):
        run.report.notes.append(f"the promotion request failed ({what}), but the gateway did promote")
        return "promoted", f"promoted: {candidate.name} (the promotion request itself failed: {what})"
    if candidate is not None:
        try:
            run.client.retire(run.tenant, run.alias, candidate.number)
        except GatewayError as retire_error:
            log.warning("run %s: could not retire %s: %s", run.id, candidate.name, retire_error)
    untouched = f"production untouched ({run.report.production_version or 'base model'})"
    return "failed", f"failed while {stage}: {what}; {untouched}"


def serves(run: Run, version: str) -> bool:
    try:
        adapter = run.client.adapter(run.tenant, run.alias) or {}
    except GatewayError:
        return False
    return adapter.get("production") == version


def revoke_key(run: Run) -> None:
    key_id = run.effects.eval_key_id
    if key_id is None:
        return
    try:
        run.client.revoke_key(run.tenant, key_id)
    except GatewayError as error:
        log.warning("run %s: could not revoke its evaluation key %s: %s", run.id, key_id, error)


def finish(run: Run, status: Status, reason: str) -> None:
    """The report, on disk and at the gateway, with the run's final status."""
    report = run.report
    report.status = status  # type: ignore[assignment]  # `locked` never gets here: such a run never started
    report.reason = reason
    report.finished_at = datetime.now(UTC)
    report.timings = dict(run.timings)
    markdown = report.to_markdown()
    save_report(run, markdown)
    try:
        run.status.finish(status, reason, report.model_dump(mode="json"), markdown)
    except Exception as error:  # the report is on disk; the lease will end the run at the gateway
        log.error("run %s: could not send the final status (%s): %s", run.id, status, error)
    if run.watcher is not None:
        run.watcher.stage(status)


def save_report(run: Run, markdown: str) -> None:
    """The report next to the run's files. The trained adapter's files go: the gateway keeps every version it
    accepted (and a rejected candidate is retired there), so nothing here is needed once the run is over."""
    try:
        run.work.mkdir(parents=True, exist_ok=True)
        (run.work / "report.json").write_text(run.report.to_json())
        (run.work / "report.md").write_text(markdown)
        shutil.rmtree(run.work / "adapter", ignore_errors=True)
    except OSError as error:
        log.warning("run %s: could not save its report under %s: %s", run.id, run.work, error)
