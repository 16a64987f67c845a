"""The schedule: one cron job per tenant and adapter alias, from tenant settings, persisted in the database.

APScheduler 3 with its SQLAlchemy job store on the record's database (table `trainer_schedule`). A sync job (kept in
memory, every `LORAFLOW_SCHEDULER__SYNC_INTERVAL_S`) reads the tenants from the admin API and adds, reschedules or
removes the cron jobs. Missed runs are coalesced into one, and still run when at most `misfire_grace_s` late.
Training runs one at a time per scheduler (one executor thread); two schedulers on one database may both fire a
job, and the gateway's per-tenant run lock lets only one of them train.

Fine-tuning jobs (OpenAI's API, trainer/fine_tuning.py) are claimed from the gateway every
`LORAFLOW_SCHEDULER__FINE_TUNING_POLL_S` and run one at a time on a thread of their own, beside the nightly runs;
the same per-tenant lock keeps a tenant's job and its nightly run apart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError

from trainer import rated_interactions
from trainer.cycle import Cycle
from trainer.fine_tuning import JobRunner
from trainer.gateway_client import GatewayClient, GatewayError
from trainer.settings import TrainerSettings, load_settings
from trainer.tenant_settings import Schedule

log = logging.getLogger(__name__)

JOB_PREFIX = "train:"
JOB_FUNCTION = "trainer.scheduler:run_job"  # stored by name, so a job outlives the process (and the code's layout)
PERSISTED = "default"  # the database job store
# Set when the scheduler is stopping: a run in progress stops at its next step and is marked failed.
STOPPING = threading.Event()


@dataclass(frozen=True)
class WantedJob:
    tenant: str
    alias: str
    cron: str
    timezone: str

    @property
    def id(self) -> str:
        return job_id(self.tenant, self.alias)

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=self.timezone)


@dataclass
class SyncResult:
    added: list[str]
    changed: list[str]
    removed: list[str]
    errors: list[str]


def job_id(tenant: str, alias: str) -> str:
    return f"{JOB_PREFIX}{tenant}:{alias}"


def wanted_jobs(client: GatewayClient) -> tuple[dict[str, WantedJob], set[str]]:
    """The jobs tenant settings ask for, and the tenants whose schedule could not be read (their jobs are kept)."""
    wanted: dict[str, WantedJob] = {}
    unreadable: set[str] = set()
    for tenant in client.tenants():
        tenant_id = tenant["id"]
        try:
            schedule = Schedule.model_validate((tenant.get("settings") or {}).get("schedule") or {})
        except ValidationError as error:
            log.warning("tenant %s: schedule setting ignored: %s", tenant_id, error.errors()[0]["msg"])
            unreadable.add(tenant_id)
            continue
        if not schedule.enabled:
            continue
        aliases = schedule.adapters
        if aliases is None:
            aliases = [adapter["alias"] for adapter in client.adapters(tenant_id)]
        for alias in aliases:
            job = WantedJob(tenant_id, alias, schedule.cron, schedule.timezone)
            wanted[job.id] = job
    return wanted, unreadable


def sync(scheduler: BaseScheduler, client: GatewayClient, *, misfire_grace_s: int) -> SyncResult:
    """Make the persisted cron jobs match tenant settings: add new ones, reschedule changed ones, remove the rest."""
    wanted, unreadable = wanted_jobs(client)
    existing = {job.id: job for job in scheduler.get_jobs(jobstore=PERSISTED) if job.id.startswith(JOB_PREFIX)}
    result = SyncResult([], [], [], [])
    for job_key, job in wanted.items():
        trigger = job.trigger()
        current = existing.get(job_key)
        if current is None:
            scheduler.add_job(
                JOB_FUNCTION,
                trigger,
                args=[job.tenant, job.alias],
                id=job_key,
                name=f"train {job.tenant}/{job.alias}",
                jobstore=PERSISTED,
                executor="training",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=misfire_grace_s,
                replace_existing=True,  # another scheduler on the same database may have added it just now
            )
            result.added.append(job_key)
        elif _describe(current.trigger) != _describe(trigger):
            try:
                scheduler.reschedule_job(job_key, jobstore=PERSISTED, trigger=trigger)
                result.changed.append(job_key)
            except JobLookupError:  # removed by another scheduler meanwhile; the next sync adds it again
                result.errors.append(f"{job_key}: gone while rescheduling")
    for job_key in existing.keys() - wanted.keys():
        if job_key.removeprefix(JOB_PREFIX).split(":", 1)[0] in unreadable:
            continue
        try:
            scheduler.remove_job(job_key, jobstore=PERSISTED)
            result.removed.append(job_key)
        except JobLookupError:
            pass  # another scheduler removed it first
    if result.added or result.changed or result.removed:
        log.info("schedule synced: added %s, changed %s, removed %s", result.added, result.changed, result.removed)
    return result


def _describe(trigger: Any) -> tuple[str, str]:
    return str(trigger), str(getattr(trigger, "timezone", ""))


def run_job(tenant: str, alias: str) -> str:
    """The scheduled job (persisted by reference): one cycle for the tenant's alias, with settings read now."""
    cycle = make_cycle()
    try:
        outcome = cycle.run(tenant, alias, trigger="schedule")
    finally:
        cycle.close()
        cycle.client.close()
    log.info("%s/%s: %s — %s", tenant, alias, outcome.status, outcome.reason)
    return outcome.status


def make_cycle() -> Cycle:
    settings = load_settings()
    client = GatewayClient(settings.url, settings.admin_secret(), timeout_s=settings.http_timeout_s)
    return Cycle(settings, client, stop=STOPPING)


def build(
    settings: TrainerSettings, client: GatewayClient, scheduler_class: type[BaseScheduler] = BlockingScheduler
) -> BaseScheduler:
    """A scheduler with the persisted job store and the sync job; `scheduler_class` is BackgroundScheduler in tests."""
    engine = rated_interactions.connect(settings.sqlalchemy_url)
    scheduler = scheduler_class(
        jobstores={
            PERSISTED: SQLAlchemyJobStore(engine=engine, tablename=settings.scheduler.table),
            "memory": MemoryJobStore(),
        },
        executors={"training": ThreadPoolExecutor(1), "sync": ThreadPoolExecutor(1), "jobs": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )
    grace = settings.scheduler.misfire_grace_s

    def sync_now() -> None:
        try:
            sync(scheduler, client, misfire_grace_s=grace)
        except GatewayError as error:  # the gateway is down or restarting: keep the jobs as they are, retry later
            log.warning("schedule not synced: %s", error)

    scheduler.add_job(
        sync_now,
        "interval",
        seconds=settings.scheduler.sync_interval_s,
        id="sync",
        name="sync the schedule from tenant settings",
        jobstore="memory",
        executor="sync",
        next_run_time=datetime.now(UTC),
    )
    jobs = JobRunner(settings, client, stop=STOPPING)

    def run_jobs() -> None:
        try:
            jobs.run_until_idle()
        except GatewayError as error:  # the gateway is down or restarting: ask again at the next poll
            log.warning("fine-tuning jobs not claimed: %s", error)

    scheduler.add_job(
        run_jobs,
        "interval",
        seconds=settings.scheduler.fine_tuning_poll_s,
        id="fine-tuning",
        name="run queued fine-tuning jobs",
        jobstore="memory",
        executor="jobs",
        next_run_time=datetime.now(UTC),
    )
    return scheduler
