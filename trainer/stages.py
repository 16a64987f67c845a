"""The stages of one flywheel run. Each is a function that takes what the stages before it produced and returns what
it produced; `trainer/cycle.py` runs them in order:

    prepare → Plan → build_dataset → Dataset → check_ratings → Checks → train → TrainedAdapter → register
            → Candidate → stage → evaluate → Scored → decide → (status, reason), after promoting the candidate,
              starting its canary, holding it for review, or retiring it

Every stage also writes what a person should read into the run's report. What a stage did that an ending may have
to undo (a registered candidate, a promotion request sent) goes into `Run.effects` as it happens.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import Engine

from trainer import dataset as datasets
from trainer import rated_interactions, rating_history, rating_signals, regression_set
from trainer.adapters import pack
from trainer.config import TrainingConfig, check_engine_limits
from trainer.evaluation import Scored, answers, evaluate
from trainer.gate import decide as gate_decision
from trainer.gate import pairs_of, split_pairs
from trainer.gateway_client import GatewayClient, GatewayError
from trainer.progress import TrainingProgress
from trainer.recipes import Recipe, recipe_for
from trainer.report import RunReport, Signals, Timings, score_table
from trainer.result import TrainingResult
from trainer.run_status import RunStatus
from trainer.scorers import EvalItem, Scorer, load_golden, registry
from trainer.settings import TrainerSettings
from trainer.tenant_settings import TenantTrainingSettings

Status = Literal["promoted", "rejected", "skipped", "failed", "held", "canary", "locked"]
# Runs that trained and decided: the next run's new ratings are the ones given since the last of them started.
DECIDED = ("promoted", "rejected", "held", "canary")


class Watcher(Protocol):
    """Someone watching a run (the CLI's progress display)."""

    def stage(self, name: str) -> None: ...

    def training(self, progress: TrainingProgress) -> None: ...

    def evaluating(self, done: int, total: int) -> None: ...


class Stopped(Exception):
    """The trainer process is stopping (Ctrl-C on the scheduler, SIGTERM): the run ends failed at its next step."""


class Finished(Exception):
    """A run that ends early with a final status (skipped); not a failure."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Candidate:
    """The adapter this run registered: `support@4`."""

    number: int
    name: str
    version: dict[str, Any]


@dataclass
class Effects:
    """What the run changed at the gateway so far: what its ending may have to undo, or report."""

    candidate: Candidate | None = None
    promote_sent: bool = False
    eval_key_id: str | None = None  # the run's own unrecorded API key, revoked when the run ends


@dataclass
class Run:
    """What every stage of one run may use: who and where, how to report progress, and its effects so far."""

    settings: TrainerSettings
    client: GatewayClient
    record: Engine  # the record's database, read-only
    tenant: str
    alias: str
    id: str
    force: bool
    status: RunStatus
    report: RunReport
    recipe: Recipe | None = None  # None: the recipe for the tenant's method
    watcher: Watcher | None = None
    stop: threading.Event | None = None
    timings: Timings = field(default_factory=Timings)
    effects: Effects = field(default_factory=Effects)

    @property
    def work(self) -> Path:
        return self.settings.work_dir / "runs" / self.id

    def enter(self, stage: str) -> None:
        self.check_stop()
        self.status.stage(stage)
        if self.watcher is not None:
            self.watcher.stage(stage)

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped("the trainer is stopping")

    def on_training(self, progress: TrainingProgress) -> None:
        self.check_stop()
        self.status.progress(progress)
        if self.watcher is not None:
            self.watcher.training(progress)

    def on_evaluating(self, done: int, total: int, elapsed_s: float) -> None:
        self.check_stop()
        self.status.counted(done, total, elapsed_s)
        if self.watcher is not None:
            self.watcher.evaluating(done, total)


@dataclass(frozen=True)
class Plan:
    """What the run will do, as the gateway described the tenant and the alias when it started."""

    config: TrainingConfig
    tenant_settings: TenantTrainingSettings
    production: str | None  # `support@3`; None while the base model serves the alias
    versions: dict[str, dict[str, Any]]  # the alias's versions by name, as the admin API lists them
    alias_options: dict[str, Any] = field(default_factory=dict)  # e.g. its own `canary` settings


@dataclass(frozen=True)
class TrainedAdapter:
    directory: Path
    result: TrainingResult
    config: TrainingConfig  # as trained: `start_from` becomes scratch when the parent could not be fetched


def prepare(run: Run) -> Plan:
    """The tenant's settings, checked against the engine before anything is trained; the alias, made if new."""
    run.enter("preparing")
    with run.timings.stage("prepare"):
        tenant_settings = TenantTrainingSettings.of(run.client.tenant(run.tenant).get("settings"))
        config = tenant_settings.training
        run.report.settings = config
        engine = run.settings.engine
        check_engine_limits(config, max_rank=engine.max_lora_rank, supported_modules=engine.lora_target_modules)
        adapter = run.client.adapter(run.tenant, run.alias) or run.client.create_adapter(run.tenant, run.alias)
        production = adapter.get("production")
        run.report.production_version = production
        versions = {v["id"]: v for v in adapter.get("versions", [])}
    return Plan(config, tenant_settings, production, versions, dict(adapter.get("options") or {}))


def build_dataset(run: Run, plan: Plan) -> datasets.Dataset:
    """The alias's rated interactions as training examples and held-out items, plus its golden set; or skip."""
    run.enter("dataset")
    settings, evaluation = plan.tenant_settings, plan.tenant_settings.evaluation
    method = plan.config.method
    if method == "dpo":  # refused in tenant settings already: only fine-tuning jobs bring preference pairs
        raise ValueError("training.method 'dpo' cannot train on the record's ratings; use 'sft' or 'kto'")
    with run.timings.stage("dataset"):
        since = last_decided_run_start(run)
        new = rated_interactions.count_ratings(run.record, run.tenant, run.alias, since)
        run.report.data.new_since_last_run = new
        if new < settings.min_new_ratings and not run.force:
            when = f"since the last finished run ({since:%Y-%m-%d %H:%M} UTC)" if since else "so far"
            raise Finished(
                "skipped",
                f"skipped: {new} new ratings {when}; at least {settings.min_new_ratings} are needed "
                "(tenant setting min_new_ratings)",
            )
        golden = load_golden(run.client.golden(run.tenant, run.alias), scorer_names(settings))
        data = datasets.build(
            rated_interactions.rated_interactions(run.record, run.tenant, run.alias),
            method=method,
            scorer=evaluation.scorer,
            held_out_fraction=evaluation.held_out_fraction,
            max_examples=plan.config.max_examples,
            max_held_out=evaluation.max_held_out,
            golden=golden,
        )
        data.counts.new_since_last_run = new
        run.report.data = data.counts
        run.report.dataset_hash = data.hash
    if not data.train:
        raise Finished("skipped", "skipped: no training examples (thumbs-up answers or corrections) in the record")
    if len(data.held_out) < evaluation.gate.min_items:
        raise Finished(
            "skipped",
            f"skipped: only {len(data.held_out)} held-out items, and the gate needs {evaluation.gate.min_items} to "
            "promote anything; wait for more ratings, or raise evaluation.held_out_fraction",
        )
    return data


@dataclass(frozen=True)
class Checks:
    """What the run found about its ratings before training: the signals, and the regression set to score."""

    signals: Signals | None  # None: the tenant turned the signals off
    regression: list[EvalItem]


def check_ratings(run: Run, plan: Plan, data: datasets.Dataset) -> Checks:
    """The new ratings against the record's history (contradictions, concentration, drift), and the regression set:
    prompts whose answer several users agreed on. Nothing is decided here: the gate reads both."""
    run.enter("checking")
    settings = plan.tenant_settings
    with run.timings.stage("check"):
        since = last_decided_run_start(run)
        past = rating_history.history(rated_interactions.rated_interactions(run.record, run.tenant, run.alias), since)
        signals = rating_signals.check(past, settings.signals) if settings.signals.enabled else None
        evaluation = settings.evaluation
        regression = regression_set.build(past, evaluation.regression, evaluation.scorer, data.kind)
        run.report.signals = signals
    if regression:
        run.report.notes.append(f"regression set: {len(regression)} answers several users agreed on, scored too")
    return Checks(signals, regression)


def train(run: Run, plan: Plan, data: datasets.Dataset) -> TrainedAdapter:
    """A LoRA on the training examples: continuing the production adapter when the settings say so, else new."""
    run.enter("training")
    config, parent = plan.config, None
    if config.start_from == "production" and plan.production is not None:
        number = int(plan.versions[plan.production]["version"])
        try:
            parent = run.client.download_version(run.tenant, run.alias, number, run.work / "parent")
        except GatewayError as error:
            run.report.notes.append(f"started from scratch: could not fetch the files of {plan.production}: {error}")
            config = config.model_copy(update={"start_from": "scratch"})
    output = run.work / "adapter"
    recipe = run.recipe or recipe_for(config.method)
    with run.timings.stage("train"):
        result = recipe(
            config,
            base_model_path(run.settings),
            data.train,
            output,
            parent_adapter=parent,
            on_progress=run.on_training,
        )
    run.report.training = result
    return TrainedAdapter(output, result, config)


def register(run: Run, plan: Plan, data: datasets.Dataset, trained: TrainedAdapter) -> Candidate:
    """Upload the adapter as the alias's next version, with its lineage; the gateway checks it before accepting."""
    run.enter("registering")
    result, config = trained.result, trained.config
    lineage = {
        "run_id": run.id,
        "parent": plan.production if result.started_from == "parent" else None,
        "incumbent": plan.production,
        "base_model": run.settings.base_model,
        "method": config.method,
        "dataset_hash": data.hash,
        "examples": {
            "train": data.counts.train,
            "trained": result.num_examples,
            "held_out": data.counts.held_out,
            "golden": data.counts.golden,
            "thumbs_up": data.counts.thumbs_up,
            "thumbs_down": data.counts.thumbs_down,
            "corrections": data.counts.corrections,
        },
        "settings": config.model_dump(mode="json"),
        "training_loss": {"final": result.final_loss, "mean": result.mean_loss},
        "steps": result.steps,
        "epochs": result.epochs,
        "started_from": result.started_from,
    }
    with run.timings.stage("register"), tempfile.TemporaryDirectory(prefix="loraflow-upload-") as scratch:
        archive = pack(trained.directory, Path(scratch) / f"{run.alias}.tar.gz")
        version = run.client.upload_version(run.tenant, run.alias, archive, lineage)
    candidate = Candidate(int(version["version"]), version["id"], version)
    run.effects.candidate = candidate
    run.report.candidate_version = candidate.name
    run.status.candidate(candidate.name)
    return candidate


def stage(run: Run, candidate: Candidate) -> None:
    """Load the candidate in the engines, so it can be evaluated under its pinned name."""
    run.enter("staging")
    with run.timings.stage("stage"):
        run.client.stage(run.tenant, run.alias, candidate.number)


def eval_items(data: datasets.Dataset, checks: Checks | None) -> list[EvalItem]:
    return [*data.eval_items, *(checks.regression if checks else [])]


class IncumbentAnswers:
    """The incumbent's answers to the evaluation items, asked through the gateway while the candidate trains.

    They do not depend on the candidate, and the engine is otherwise idle during training: the cycle's two longest
    stages overlap (SmolLM2 extraction, 1,000 interactions: the base model's 214 answers of up to 32 tokens took 2 of
    the cycle's 6 minutes). The run's unrecorded key is made here and used again for the candidate's answers.
    """

    def __init__(self, run: Run, plan: Plan, items: list[EvalItem]) -> None:
        evaluation = plan.tenant_settings.evaluation
        run.effects.eval_key_id, key = run.client.create_key(run.tenant, f"trainer run {run.id}", record=False)
        self.client = run.client.openai(key)
        self.model = plan.production or self.client.models.list().data[0].id  # first entry: the base model
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._finished: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incumbent")
        self._future = self._pool.submit(self._answer, items, evaluation.max_tokens, evaluation.concurrency)

    def _answer(self, items: list[EvalItem], max_tokens: int, concurrency: int) -> list[str]:
        try:
            return answers(self.client, items, self.model, max_tokens=max_tokens, concurrency=concurrency,
                           stop=self._stop)  # fmt: skip
        finally:
            self._finished = time.perf_counter()

    def result(self, run: Run) -> list[str]:
        asked_for = time.perf_counter()
        outputs = self._future.result()
        finished = self._finished or time.perf_counter()
        run.report.notes.append(
            f"the incumbent's {len(outputs)} answers were asked while the candidate trained: "
            f"{finished - self._started:.0f} s, of which {max(0.0, finished - asked_for):.0f} s after training"
        )
        return outputs

    def close(self) -> None:
        self._stop.set()  # a run that ends early does not wait for answers nobody needs
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def evaluate_candidate(
    run: Run,
    plan: Plan,
    data: datasets.Dataset,
    candidate: Candidate,
    checks: Checks | None = None,
    incumbent: IncumbentAnswers | None = None,
) -> Scored:
    """The candidate and the incumbent answer the same held-out, golden and regression-set items through the
    gateway (the incumbent's answers asked during training already, when `incumbent` holds them)."""
    run.enter("evaluating")
    evaluation = plan.tenant_settings.evaluation
    with run.timings.stage("evaluate"):
        if incumbent is None:
            run.effects.eval_key_id, key = run.client.create_key(run.tenant, f"trainer run {run.id}", record=False)
            client = run.client.openai(key)
        else:
            client = incumbent.client
        judge = judge_for(plan.tenant_settings)
        try:
            return evaluate(
                client,
                eval_items(data, checks),
                candidate=candidate.name,
                incumbent=incumbent.model if incumbent else plan.production or client.models.list().data[0].id,
                scorers=registry(judge),
                max_tokens=evaluation.max_tokens,
                concurrency=evaluation.concurrency,
                on_progress=run.on_evaluating,
                incumbent_outputs=incumbent.result(run) if incumbent else None,
            )
        finally:
            if incumbent is None:
                client.close()
            if judge is not None:
                judge.close()


def decide(
    run: Run, plan: Plan, candidate: Candidate, scored: Scored, checks: Checks | None = None
) -> tuple[Status, str]:
    """The gate's decision, then promote the candidate (or start its canary), hold it for review, or retire it."""
    run.enter("gating")
    policy = plan.tenant_settings.evaluation.gate
    with run.timings.stage("gate"):
        held_out, golden = split_pairs(scored.items, scored.candidate, scored.incumbent)
        regression = pairs_of("regression", scored.items, scored.candidate, scored.incumbent)
        fired = [f"{s.name}: {s.summary}" for s in checks.signals.fired] if checks and checks.signals else []
        decision = gate_decision(
            held_out,
            golden,
            policy,
            incumbent="production" if plan.production else "base",
            regression=regression,
            signals=fired,
        )
        run.report.decision = decision
        run.report.scores = score_table(scored.items, scored.candidate, scored.incumbent, policy)
        run.report.samples = scored.samples()
    if decision.decision == "reject":
        retire(run, candidate)
        return "rejected", decision.reason
    if decision.decision == "hold":  # staged, so a person can try it pinned before deciding
        run.report.notes.append(
            f"{candidate.name} stays staged until a person decides: `loraflow train approve {run.id} --tenant "
            f"{run.tenant}` promotes it, `loraflow train reject ...` retires it"
        )
        return "held", decision.reason

    run.status.check()  # the run still holds the tenant's lock
    now = (run.client.adapter(run.tenant, run.alias) or {}).get("production")
    if now != plan.production:
        retire(run, candidate)
        return "rejected", (
            f"rejected: production changed during the run ({plan.production or 'base model'} -> "
            f"{now or 'base model'}), so the comparison is stale; the next run compares against the new production"
        )
    canary = plan.tenant_settings.canary.overridden(plan.alias_options.get("canary"))
    if canary.enabled:
        run.enter("canary")
        with run.timings.stage("canary"):
            started = run.client.start_canary(run.tenant, run.alias, canary.request(candidate.number, run.id))
        run.report.notes.append(
            f"canary {started['id']}: {candidate.name} serves {canary.share:.0%} of {run.alias}'s users; the gateway "
            f"promotes it or sends it back by their 👍 rates (alpha {canary.alpha}, budget {canary.max_ratings} "
            f"ratings or {canary.max_hours:g} h, then {canary.on_budget})"
        )
        return "canary", f"canary: {decision.reason.removeprefix('promoted: ')}"
    run.enter("promoting")
    with run.timings.stage("promote"):
        run.effects.promote_sent = True
        run.client.promote(run.tenant, run.alias, candidate.number, f"{run.id}: {decision.reason}")
    return "promoted", decision.reason


def retire(run: Run, candidate: Candidate) -> None:
    run.enter("retiring")
    with run.timings.stage("retire"):
        run.client.retire(run.tenant, run.alias, candidate.number)


# What the stages look up.


def last_decided_run_start(run: Run) -> datetime | None:
    """When the alias's last run that trained and decided (promoted, rejected, held or sent to canary) started."""
    for other in run.client.runs(run.tenant, adapter=run.alias, limit=100):
        if other["id"] != run.id and other["status"] in DECIDED:
            return datetime.fromisoformat(other["created_at"]).astimezone(UTC)
    return None


def scorer_names(tenant_settings: TenantTrainingSettings) -> list[str]:
    names = list(registry(None))
    return [*names, "judge"] if tenant_settings.evaluation.judge else names


class _ClosableScorer(Scorer, Protocol):
    def close(self) -> None: ...


def judge_for(tenant_settings: TenantTrainingSettings) -> _ClosableScorer | None:
    judge = tenant_settings.evaluation.judge
    if judge is None:
        return None
    from trainer.judge import JudgeScorer

    api_key = os.environ.get(judge.api_key_env, "") if judge.api_key_env else ""
    return JudgeScorer(judge.base_url, judge.model, api_key=api_key or "not-needed", scale=judge.scale)


def base_model_path(settings: TrainerSettings) -> str:
    # A built-in name or a GGUF file: made once under var/models (as `loraflow up` makes it), then reused.
    from trainer import base_model

    return str(base_model.prepare(settings.base_model, settings.var_dir))
