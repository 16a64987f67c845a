"""One flywheel run for one tenant's adapter alias, read top to bottom:

lock (start a run at the gateway) → settings → data from the record (or skip) → train → register the candidate →
stage it → evaluate candidate and incumbent through the gateway → gate → promote, or retire → report.

Every failure leaves production untouched: nothing is promoted on an exception path, a registered candidate is
retired, and the run ends `failed` with the reason. A run killed outright stops sending heartbeats, and the gateway
marks it failed after its lease. If the gateway ended the run (lost lease), the cycle stops before promoting.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import Engine

from trainer import dataset as datasets
from trainer import rated_interactions
from trainer.adapters import pack
from trainer.config import TrainingConfig, check_engine_limits
from trainer.evaluation import Scored, evaluate
from trainer.gate import decide, split_pairs
from trainer.gateway_client import GatewayClient, GatewayError, RunInProgress
from trainer.progress import TrainingProgress
from trainer.recipes import Recipe, recipe_for
from trainer.report import RunReport, Timings, score_table
from trainer.run_status import RunStatus
from trainer.scorers import Scorer, load_golden, registry
from trainer.settings import DEMO_MODEL, TrainerSettings
from trainer.tenant_settings import TenantTrainingSettings

log = logging.getLogger(__name__)

Status = Literal["promoted", "rejected", "skipped", "failed", "locked"]


@dataclass
class Outcome:
    """How a run ended. `locked`: another run of the tenant held the lock, so this one never started."""

    status: Status
    reason: str
    run_id: str | None = None
    candidate: str | None = None
    report: RunReport | None = None


class Watcher(Protocol):
    """Someone watching a run (the CLI's progress display)."""

    def stage(self, name: str) -> None: ...

    def training(self, progress: TrainingProgress) -> None: ...

    def evaluating(self, done: int, total: int) -> None: ...


class Stopped(Exception):
    """The trainer process is stopping (Ctrl-C on the scheduler, SIGTERM): the run ends failed at its next step."""


class Finished(Exception):
    """A run that ends early with a final status (skipped, or rejected before promotion); not a failure."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class _Candidate:
    number: int
    name: str  # support@4
    version: dict[str, Any]
    adapter_dir: Path


class Cycle:
    """Runs cycles for any tenant through one gateway client. `stop`, once set, ends a run at its next step;
    `recipe` replaces the training recipe in tests."""

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
        self.stop = stop
        self.client = client
        self._engine = engine
        self._recipe = recipe
        self.watcher = watcher

    @property
    def engine(self) -> Engine:
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
        run = _Run(self, tenant, alias, started["id"], force)
        log.info("%s/%s: run %s started (%s, %s)", tenant, alias, run.id, trigger, runner)
        return run.execute()


class _Run:
    """The state of one run while it executes."""

    def __init__(self, cycle: Cycle, tenant: str, alias: str, run_id: str, force: bool) -> None:
        self.cycle, self.client, self.settings = cycle, cycle.client, cycle.settings
        self.tenant, self.alias, self.id, self.force = tenant, alias, run_id, force
        self.report = RunReport(
            run_id=run_id, tenant=tenant, adapter=alias, status="failed", reason="", started_at=datetime.now(UTC)
        )
        self.timings = Timings()
        self.work = self.settings.work_dir / "runs" / run_id
        self.candidate: _Candidate | None = None
        self.key_id: str | None = None
        self.promote_sent = False
        self.status: RunStatus | None = None
        self.versions: dict[str, dict[str, Any]] = {}  # the alias's versions by name, as the admin API lists them
        self.data: datasets.Dataset | None = None

    def execute(self) -> Outcome:
        status = RunStatus(
            self.client,
            self.tenant,
            self.id,
            heartbeat_s=self.settings.heartbeat_s,
            progress_interval_s=self.settings.progress_interval_s,
        )
        self.status = status
        interrupted: BaseException | None = None
        with status:
            try:
                final, reason = self.steps()
            except Finished as early:
                final, reason = early.status, early.reason
            except BaseException as error:  # Ctrl-C too: the run is marked failed, then the interrupt goes on
                final, reason = self.failed(error)
                if not isinstance(error, Exception):
                    interrupted = error
            finally:
                self.revoke_key()
            self.finish(final, reason)
        if interrupted is not None:
            raise interrupted
        return Outcome(final, reason, self.id, self.report.candidate_version, self.report)

    # The steps, in order.

    def steps(self) -> tuple[Status, str]:
        config, tenant_settings, production = self.prepare()
        data = self.build_dataset(config, tenant_settings)
        adapter_dir = self.train(config, data, production)
        self.register(adapter_dir, config, data, production)
        self.stage_candidate()
        scored = self.evaluate_candidate(tenant_settings, production)
        return self.gate_and_decide(tenant_settings, production, scored)

    def prepare(self) -> tuple[TrainingConfig, TenantTrainingSettings, str | None]:
        self.enter("preparing")
        with self.timings.stage("prepare"):
            tenant_settings = TenantTrainingSettings.of(self.client.tenant(self.tenant).get("settings"))
            config = tenant_settings.training
            self.report.settings = config
            engine = self.settings.engine
            check_engine_limits(config, max_rank=engine.max_lora_rank, supported_modules=engine.lora_target_modules)
            adapter = self.client.adapter(self.tenant, self.alias) or self.client.create_adapter(
                self.tenant, self.alias
            )
            production = adapter.get("production")
            self.report.production_version = production
            self.versions = {v["id"]: v for v in adapter.get("versions", [])}
        return config, tenant_settings, production

    def build_dataset(self, config: TrainingConfig, tenant_settings: TenantTrainingSettings) -> datasets.Dataset:
        self.enter("dataset")
        evaluation = tenant_settings.evaluation
        with self.timings.stage("dataset"):
            since = self.last_finished_run_start()
            new = rated_interactions.count_ratings(self.cycle.engine, self.tenant, self.alias, since)
            self.report.data.new_since_last_run = new
            if new < tenant_settings.min_new_ratings and not self.force:
                when = f"since the last finished run ({since:%Y-%m-%d %H:%M} UTC)" if since else "so far"
                raise Finished(
                    "skipped",
                    f"skipped: {new} new ratings {when}; at least {tenant_settings.min_new_ratings} are needed "
                    "(tenant setting min_new_ratings)",
                )
            golden = load_golden(self.client.golden(self.tenant, self.alias), self.scorer_names(tenant_settings))
            data = datasets.build(
                rated_interactions.rated_interactions(self.cycle.engine, self.tenant, self.alias),
                method=config.method,
                scorer=evaluation.scorer,
                held_out_fraction=evaluation.held_out_fraction,
                max_examples=config.max_examples,
                max_held_out=evaluation.max_held_out,
                golden=golden,
            )
            data.counts.new_since_last_run = new
            self.data = data
            self.report.data = data.counts
            self.report.dataset_hash = data.hash
        if not data.train:
            raise Finished("skipped", "skipped: no training examples (thumbs-up answers or corrections) in the record")
        if len(data.held_out) < evaluation.gate.min_items:
            raise Finished(
                "skipped",
                f"skipped: only {len(data.held_out)} held-out items, and the gate needs {evaluation.gate.min_items} to "
                "promote anything; wait for more ratings, or raise evaluation.held_out_fraction",
            )
        log.info("%s/%s: %s", self.tenant, self.alias, data.counts.model_dump_json())
        return data

    def train(self, config: TrainingConfig, data: datasets.Dataset, production: str | None) -> Path:
        self.enter("training")
        parent = None
        if config.start_from == "production" and production is not None:
            number = int(self.versions[production]["version"])
            try:
                parent = self.client.download_version(self.tenant, self.alias, number, self.work / "parent")
            except GatewayError as error:
                self.report.notes.append(f"started from scratch: could not fetch the files of {production}: {error}")
                config = config.model_copy(update={"start_from": "scratch"})
        output = self.work / "adapter"
        recipe = self.cycle._recipe or recipe_for(config.method)
        with self.timings.stage("train"):
            self.report.training = recipe(
                config,
                self.base_model_path(),
                data.train,
                output,
                parent_adapter=parent,
                on_progress=self.on_training,
            )
        return output

    def register(self, adapter_dir: Path, config: TrainingConfig, data: datasets.Dataset, production: str | None):
        self.enter("registering")
        training = self.report.training
        assert training is not None
        lineage = {
            "run_id": self.id,
            "parent": production if training.started_from == "parent" else None,
            "incumbent": production,
            "base_model": self.settings.base_model,
            "method": config.method,
            "dataset_hash": data.hash,
            "examples": {
                "train": data.counts.train,
                "trained": training.num_examples,
                "held_out": data.counts.held_out,
                "golden": data.counts.golden,
                "thumbs_up": data.counts.thumbs_up,
                "thumbs_down": data.counts.thumbs_down,
                "corrections": data.counts.corrections,
            },
            "settings": config.model_dump(mode="json"),
            "training_loss": {"final": training.final_loss, "mean": training.mean_loss},
            "steps": training.steps,
            "epochs": training.epochs,
            "started_from": training.started_from,
        }
        with self.timings.stage("register"), tempfile.TemporaryDirectory(prefix="loraflow-upload-") as scratch:
            archive = pack(adapter_dir, Path(scratch) / f"{self.alias}.tar.gz")
            version = self.client.upload_version(self.tenant, self.alias, archive, lineage)
        self.candidate = _Candidate(int(version["version"]), version["id"], version, adapter_dir)
        self.report.candidate_version = version["id"]
        assert self.status is not None
        self.status.candidate(version["id"])
        log.info("%s/%s: registered %s", self.tenant, self.alias, version["id"])

    def stage_candidate(self) -> None:
        self.enter("staging")
        assert self.candidate is not None
        with self.timings.stage("stage"):
            self.client.stage(self.tenant, self.alias, self.candidate.number)

    def evaluate_candidate(self, tenant_settings: TenantTrainingSettings, production: str | None) -> Scored:
        self.enter("evaluating")
        assert self.candidate is not None and self.data is not None
        evaluation = tenant_settings.evaluation
        with self.timings.stage("evaluate"):
            self.key_id, key = self.client.create_key(self.tenant, f"trainer run {self.id}", record=False)
            client = self.client.openai(key)
            judge = self.judge(tenant_settings)
            try:
                incumbent = production or client.models.list().data[0].id  # first entry: the base model
                scored = evaluate(
                    client,
                    self.data.eval_items,
                    candidate=self.candidate.name,
                    incumbent=incumbent,
                    scorers=registry(judge),
                    max_tokens=evaluation.max_tokens,
                    concurrency=evaluation.concurrency,
                    on_progress=self.on_evaluating,
                )
            finally:
                client.close()
                if judge is not None:
                    judge.close()  # type: ignore[attr-defined]
        return scored

    def gate_and_decide(
        self, tenant_settings: TenantTrainingSettings, production: str | None, scored: Scored
    ) -> tuple[Status, str]:
        self.enter("gating")
        assert self.candidate is not None
        policy = tenant_settings.evaluation.gate
        with self.timings.stage("gate"):
            held_out, golden = split_pairs(scored.items, scored.candidate, scored.incumbent)
            decision = decide(held_out, golden, policy, incumbent="production" if production else "base")
            self.report.decision = decision
            self.report.scores = score_table(scored.items, scored.candidate, scored.incumbent, policy)
            self.report.samples = scored.samples()
        if not decision.promote:
            self.retire_candidate()
            return "rejected", decision.reason

        self.assert_still_ours()
        now = (self.client.adapter(self.tenant, self.alias) or {}).get("production")
        if now != production:
            self.retire_candidate()
            return "rejected", (
                f"rejected: production changed during the run ({production or 'base model'} -> {now or 'base model'}),"
                " so the comparison is stale; the next run compares against the new production"
            )
        self.enter("promoting")
        with self.timings.stage("promote"):
            self.promote_sent = True
            self.client.promote(self.tenant, self.alias, self.candidate.number, f"{self.id}: {decision.reason}")
        log.info("%s/%s: promoted %s", self.tenant, self.alias, self.candidate.name)
        return "promoted", decision.reason

    # Endings.

    def failed(self, error: BaseException) -> tuple[Status, str]:
        """The reason a run failed, after making sure production is as it was (or, if a promotion request failed
        after the gateway did promote, saying so)."""
        stage = self.status.current_stage if self.status else "starting"
        what = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
        log.error("%s/%s: run %s failed while %s: %s", self.tenant, self.alias, self.id, stage, what)
        if self.promote_sent and self.candidate is not None and self.serves_candidate():
            self.report.notes.append(f"the promotion request failed ({what}), but the gateway did promote")
            return "promoted", f"promoted: {self.candidate.name} (the promotion request itself failed: {what})"
        self.retire_candidate(best_effort=True)
        untouched = f"production untouched ({self.report.production_version or 'base model'})"
        return "failed", f"failed while {stage}: {what}; {untouched}"

    def finish(self, status: Status, reason: str) -> None:
        self.report.status = status  # type: ignore[assignment]
        self.report.reason = reason
        self.report.finished_at = datetime.now(UTC)
        self.report.timings = dict(self.timings)
        markdown = self.report.to_markdown()
        self.save_report(markdown)
        try:
            assert self.status is not None
            self.status.finish(status, reason, self.report.model_dump(mode="json"), markdown)
        except Exception as error:  # the report is on disk; the lease will end the run at the gateway
            log.error("run %s: could not send the final status (%s): %s", self.id, status, error)
        if self.watcher is not None:
            self.watcher.stage(status)

    # Helpers.

    @property
    def watcher(self) -> Watcher | None:
        return self.cycle.watcher

    def enter(self, stage: str) -> None:
        self.check_stop()
        assert self.status is not None
        self.status.stage(stage)
        if self.watcher is not None:
            self.watcher.stage(stage)

    def check_stop(self) -> None:
        if self.cycle.stop is not None and self.cycle.stop.is_set():
            raise Stopped("the trainer is stopping")

    def on_training(self, progress: TrainingProgress) -> None:
        self.check_stop()
        assert self.status is not None
        self.status.progress(progress)
        if self.watcher is not None:
            self.watcher.training(progress)

    def on_evaluating(self, done: int, total: int, elapsed_s: float) -> None:
        self.check_stop()
        assert self.status is not None
        self.status.counted(done, total, elapsed_s)
        if self.watcher is not None:
            self.watcher.evaluating(done, total)

    def assert_still_ours(self) -> None:
        assert self.status is not None
        self.status.check()

    def retire_candidate(self, *, best_effort: bool = False) -> None:
        if self.candidate is None:
            return
        if not best_effort:
            self.enter("retiring")
        try:
            with self.timings.stage("retire"):
                self.client.retire(self.tenant, self.alias, self.candidate.number)
        except GatewayError as error:
            if not best_effort:
                raise
            log.warning("run %s: could not retire %s: %s", self.id, self.candidate.name, error)

    def serves_candidate(self) -> bool:
        try:
            adapter = self.client.adapter(self.tenant, self.alias) or {}
        except GatewayError:
            return False
        return self.candidate is not None and adapter.get("production") == self.candidate.name

    def revoke_key(self) -> None:
        if self.key_id is None:
            return
        try:
            self.client.revoke_key(self.tenant, self.key_id)
        except GatewayError as error:
            log.warning("run %s: could not revoke its evaluation key %s: %s", self.id, self.key_id, error)

    def last_finished_run_start(self) -> datetime | None:
        """When the alias's last run that trained and decided (promoted or rejected) started."""
        for run in self.client.runs(self.tenant, adapter=self.alias, limit=100):
            if run["id"] != self.id and run["status"] in ("promoted", "rejected"):
                return datetime.fromisoformat(run["created_at"]).astimezone(UTC)
        return None

    def scorer_names(self, tenant_settings: TenantTrainingSettings) -> list[str]:
        names = list(registry(None))
        return [*names, "judge"] if tenant_settings.evaluation.judge else names

    def judge(self, tenant_settings: TenantTrainingSettings) -> Scorer | None:
        judge = tenant_settings.evaluation.judge
        if judge is None:
            return None
        from trainer.judge import JudgeScorer

        api_key = os.environ.get(judge.api_key_env, "") if judge.api_key_env else ""
        return JudgeScorer(judge.base_url, judge.model, api_key=api_key or "not-needed", scale=judge.scale)

    def base_model_path(self) -> str:
        path = self.settings.base_model_path
        if self.settings.base_model == DEMO_MODEL and not Path(path).is_dir():
            from trainer.demo_model import build

            build(Path(path), log=lambda _: None)
        return path

    def save_report(self, markdown: str) -> None:
        """The report next to the run's files, and the run's adapter removed unless it was promoted (kept then)."""
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            (self.work / "report.json").write_text(self.report.to_json())
            (self.work / "report.md").write_text(markdown)
            shutil.rmtree(self.work / "adapter", ignore_errors=True)
        except OSError as error:
            log.warning("run %s: could not save its report under %s: %s", self.id, self.work, error)
