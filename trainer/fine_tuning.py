"""Fine-tuning jobs on the trainer, read top to bottom:

claim a job at the gateway (it then holds its tenant's training lock) → its files → its settings (the tenant's
`training` settings and the job's hyperparameters, trainer/fine_tuning_data.py) → train with the recipes (a metrics
event every few steps, a checkpoint at the end of each epoch but the last; cancellation and stopping are seen at the
next step) → hand the adapter and the metrics CSV to the gateway, which registers the adapter and serves it at once.

Every ending is reported: `failed` with OpenAI's error object, `cancelled` (as the tenant asked), or `interrupted`
(the trainer is stopping: the job is queued again, and the next claim resumes it from its last checkpoint). A
trainer killed outright stops reporting; the gateway queues its job again once the lease has run out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.adapters import pack
from trainer.config import ConfigError, check_engine_limits
from trainer.examples import DataError
from trainer.fine_tuning_data import read_records, results_csv, training_config
from trainer.gateway_client import GatewayClient, GatewayError, JobLost
from trainer.progress import TrainingProgress
from trainer.recipes import Recipe, recipe_for
from trainer.result import TrainingResult
from trainer.settings import TrainerSettings
from trainer.stages import Stopped, base_model_path
from trainer.tenant_settings import SettingsError, TenantTrainingSettings

log = logging.getLogger(__name__)

METRICS_EVENTS = 20  # about this many metrics events a job, plus every step the validation loss was measured at


class Cancelled(Exception):
    """The tenant cancelled the job: training stops at its next step."""


class JobRunner:
    """Claims and runs jobs through one gateway client. `stop`, once set, interrupts a job at its next step;
    `recipe` replaces the recipes (tests)."""

    def __init__(
        self,
        settings: TrainerSettings,
        client: GatewayClient,
        *,
        stop: threading.Event | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        self.settings, self.client, self.stop, self.recipe = settings, client, stop, recipe
        self.runner = f"{socket.gethostname()}:{os.getpid()}"

    def run_next(self) -> str | None:
        """Claim one job and run it to its end; returns how it ended, or None when no job could start."""
        job = self.client.claim_job(self.runner)
        if job is None:
            return None
        log.info("%s/%s: fine-tuning job started (attempt %d)", job["tenant_id"], job["id"], job["attempt"])
        ending = _Job(self, job).run()
        log.info("%s/%s: %s", job["tenant_id"], job["id"], ending)
        return ending

    def run_until_idle(self) -> int:
        """Run jobs until none can start (or the trainer is stopping); returns how many ran."""
        count = 0
        while not (self.stop is not None and self.stop.is_set()) and self.run_next() is not None:
            count += 1
        return count


class _Job:
    """One claimed job while it runs."""

    def __init__(self, runner: JobRunner, job: dict[str, Any]) -> None:
        self.runner, self.client, self.settings, self.job = runner, runner.client, runner.settings, job
        self.work = self.settings.work_dir / "jobs" / job["id"]
        self.reporter = Reporter(self.client, job, interval_s=min(self.settings.progress_interval_s or 1.0, 5.0))
        self.offset_steps, self.offset_epochs = 0, 0.0  # what an earlier attempt trained, when resuming
        self.rows: dict[int, dict[str, Any]] = {}  # the metrics CSV, by step
        self.pending: dict[str, Any] | None = None  # the latest step's metrics event, until its validation loss
        self.every = 1
        self.started = time.monotonic()

    def run(self) -> str:
        shutil.rmtree(self.work, ignore_errors=True)
        try:
            with self.reporter:
                return self._run()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _run(self) -> str:
        try:
            self.steps()
            return "succeeded"
        except JobLost as lost:
            return f"lost: {lost.message}"
        except Cancelled:
            return self.end("cancelled")
        except (Stopped, KeyboardInterrupt) as stopping:
            self.end("interrupted", message="the trainer is stopping")
            if isinstance(stopping, KeyboardInterrupt):
                raise
            return "interrupted"
        except Exception as error:
            log.exception("fine-tuning job %s failed", self.job["id"])
            return self.end("failed", error=error_object(error))

    # The steps, in order.

    def steps(self) -> None:
        job = self.job
        records, validation = self.files()
        parent = self.starting_point()
        tenant = TenantTrainingSettings.of(self.client.tenant(job["tenant_id"]).get("settings")).training
        config, used = training_config(tenant, job["method"], job["seed"], len(records), parent)
        engine = self.settings.engine
        check_engine_limits(config, max_rank=engine.max_lora_rank, supported_modules=engine.lora_target_modules)
        if self.offset_epochs:  # resuming: the epochs an earlier attempt trained are done
            config = config.model_copy(update={"epochs": max(config.epochs - self.offset_epochs, 1.0)})
        self.reporter.send(method=used)
        recipe = self.runner.recipe or recipe_for(config.method)
        output = self.work / "adapter"
        result = recipe(
            config,
            base_model_path(self.settings),
            records,
            output,
            parent_adapter=parent,
            on_progress=self.on_progress,
            eval_records=validation,
            callbacks=[CheckpointEachEpoch(self.checkpoint)],
        )
        self.flush_metrics()
        self.check()
        self.complete(output, result)

    def files(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        job, kind = self.job, self.job["method"].get("type", "supervised")
        training = read_records(self.client.job_file(job, job["training_file"], self.work / "training.jsonl"), kind)
        if not job["validation_file"]:
            return training, None
        path = self.client.job_file(job, job["validation_file"], self.work / "validation.jsonl")
        return training, read_records(path, kind)

    def starting_point(self) -> Path | None:
        """The adapter training starts from: the last checkpoint of an earlier attempt, the adapter the job
        continues, or None (a new one)."""
        job, checkpoint = self.job, self.job.get("resume_from")
        if checkpoint:
            self.offset_steps = int(checkpoint["step_number"])
            self.offset_epochs = float(checkpoint["metrics"].get("epoch") or 0.0)
            self.reporter.event(f"Resuming from the checkpoint at step {self.offset_steps} ({checkpoint['id']})")
            return self.client.download_checkpoint(job, checkpoint["id"], self.work / "resume")
        parent = job.get("parent")
        if parent:
            return self.client.download_version(
                job["tenant_id"], parent["alias"], parent["version"], self.work / "parent"
            )
        return None

    def complete(self, output: Path, result: TrainingResult) -> None:
        summary = {
            "trained_tokens": result.tokens,
            "lineage": {
                "method": result.method,
                "settings": result.settings.model_dump(mode="json"),
                "dataset_hash": result.dataset_hash,
                "examples": result.num_examples,
                "steps": self.offset_steps + result.steps,
                "training_loss": {"final": result.final_loss, "mean": result.mean_loss},
                "resumed_at_step": self.offset_steps or None,
            },
        }
        archive = pack(output, self.work / "adapter.tar.gz")
        csv = results_csv(self.rows[step] for step in sorted(self.rows))
        self.reporter.flush()
        for attempt in range(4):  # a gateway restarting or an engine down (5xx): the same request again
            try:
                self.client.complete_job(self.job, archive, csv, summary)
                return
            except JobLost:
                raise
            except GatewayError as error:
                if error.status == 409 and error.code == "job_cancelled":
                    raise Cancelled from None
                if (error.status and error.status < 500) or attempt == 3:
                    raise
                log.warning("job %s: handing over the adapter failed (%s); retrying", self.job["id"], error)
                time.sleep(2**attempt)

    def end(self, status: str, *, error: dict[str, Any] | None = None, message: str = "") -> str:
        self.reporter.close()
        with contextlib.suppress(GatewayError):
            self.reporter.flush()  # the events so far go first
        try:
            self.client.end_job(self.job, status, error=error, message=message)
        except GatewayError as failure:  # the lease will end it at the gateway
            log.error("job %s: could not report its end (%s): %s", self.job["id"], status, failure)
        return status

    # While training.

    def on_progress(self, progress: TrainingProgress) -> None:
        self.check()
        step = self.offset_steps + progress.step
        total = self.offset_steps + progress.total_steps
        if progress.valid_loss is not None:
            self.rows.setdefault(step, {"step": step})["valid_loss"] = progress.valid_loss
            if self.pending is None or self.pending["step"] != step:
                self.flush_metrics()
                self.pending = self.metrics(step, total)
            self.pending["valid_loss"] = progress.valid_loss
            self.flush_metrics()
            return
        if progress.loss is None:  # training begins
            self.every = max(1, progress.total_steps // METRICS_EVENTS)
            return
        self.flush_metrics()
        self.rows[step] = {"step": step, "train_loss": progress.loss}
        if progress.step % self.every == 0 or progress.step == progress.total_steps:
            self.pending = self.metrics(step, total)
        remaining_s = progress.elapsed_s / max(progress.step, 1) * (progress.total_steps - progress.step)
        self.reporter.progress(
            {"step": step, "total_steps": total, "epoch": round(self.offset_epochs + progress.epoch, 3),
             "loss": progress.loss, "elapsed_s": round(time.monotonic() - self.started, 1)},
            estimated_finish=int(time.time() + remaining_s),
        )  # fmt: skip

    def metrics(self, step: int, total: int) -> dict[str, Any]:
        return {"step": step, "train_loss": self.rows.get(step, {}).get("train_loss"), "total_steps": total}

    def flush_metrics(self) -> None:
        if self.pending is None:
            return
        data, self.pending = self.pending, None
        text = f"Step {data['step']}/{data['total_steps']}: training loss={_number(data['train_loss'])}"
        if data.get("valid_loss") is not None:
            text += f", validation loss={_number(data['valid_loss'])}"
        self.reporter.event(text, type="metrics", data={k: v for k, v in data.items() if v is not None})

    def checkpoint(self, model: Any, step: int, epoch: float) -> None:
        """Save the adapter as trained so far and hand it to the gateway: listed by the checkpoints API, and where
        the job resumes if this trainer is lost."""
        self.check()
        step += self.offset_steps
        directory = self.work / "checkpoints" / str(step)
        try:
            model.save_pretrained(str(directory), selected_adapters=["default"], safe_serialization=True)
            metrics = {key: value for key, value in self.rows.get(step, {}).items() if key != "step"}
            metrics["epoch"] = self.offset_epochs + epoch
            self.client.add_checkpoint(self.job, step, metrics, pack(directory, directory.with_suffix(".tar.gz")))
        except JobLost:
            raise
        except (GatewayError, OSError) as error:  # training goes on; only a resume would start earlier
            log.warning("job %s: checkpoint at step %d not kept: %s", self.job["id"], step, error)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            directory.with_suffix(".tar.gz").unlink(missing_ok=True)

    def check(self) -> None:
        """Raise if the job must stop now: the trainer is stopping, the job was cancelled, or the run lost it."""
        if self.runner.stop is not None and self.runner.stop.is_set():
            raise Stopped("the trainer is stopping")
        self.reporter.check()


class Reporter:
    """Sends a job's events and progress to the gateway every `interval_s` from a thread of its own (each report is
    also the heartbeat), and learns the job's status from the answers: `cancelled` means stop."""

    def __init__(self, client: GatewayClient, job: dict[str, Any], *, interval_s: float) -> None:
        self.client, self.job, self.interval_s = client, job, interval_s
        self.cancelled = threading.Event()
        self.lost: str | None = None
        self._events: list[dict[str, Any]] = []
        self._progress: dict[str, Any] | None = None
        self._estimated_finish: int | None = None
        self._lock = threading.Lock()  # guards the pending events
        self._wire = threading.Lock()  # one report on the wire at a time
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"reports {job['id']}", daemon=True)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def event(self, message: str, *, level: str = "info", type: str = "message", data: dict | None = None) -> None:
        with self._lock:
            self._events.append({"message": message[:2000], "level": level, "type": type, "data": data})

    def progress(self, progress: dict[str, Any], *, estimated_finish: int | None = None) -> None:
        self._progress, self._estimated_finish = progress, estimated_finish

    def send(self, **extra: Any) -> None:
        """Report now, with `extra` fields (the hyperparameters used)."""
        self._report(**extra)

    def flush(self) -> None:
        self._report()

    def check(self) -> None:
        if self.lost is not None:
            raise JobLost(409, self.lost, "job_lost")
        if self.cancelled.is_set():
            raise Cancelled()

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self._report()
            except JobLost:
                return
            except GatewayError as error:  # a blip: the next beat tries again, and the lease is many beats long
                log.warning("job %s: report failed: %s", self.job["id"], error)

    def _report(self, **extra: Any) -> None:
        with self._wire:
            if self.lost is not None:
                raise JobLost(409, self.lost, "job_lost")
            with self._lock:
                events, self._events = self._events, []
            body: dict[str, Any] = {"events": events, "progress": self._progress, **extra}
            if self._estimated_finish is not None:
                body["estimated_finish"] = self._estimated_finish
            try:
                status = self.client.report_job(self.job, **body)
            except JobLost as lost:
                self.lost = lost.message
                raise
            except GatewayError:
                with self._lock:
                    self._events = events + self._events  # sent again with the next report
                raise
        if status == "cancelled":
            self.cancelled.set()


class CheckpointEachEpoch(TrainerCallback):
    """Calls `save(model, step, epoch)` at the end of every epoch but the last (the last is the job's model)."""

    def __init__(self, save: Callable[[Any, int, float], None]) -> None:
        self.save = save

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step < state.max_steps:
            self.save(model, state.global_step, float(round(state.epoch or 0.0, 3)))


def error_object(error: Exception) -> dict[str, Any]:
    """OpenAI's error object for why a job failed."""
    if isinstance(error, DataError):
        return {"code": "invalid_training_file", "message": f"The training file could not be trained on: {error}",
                "param": "training_file"}  # fmt: skip
    if isinstance(error, ConfigError | SettingsError):
        return {"code": "invalid_settings", "message": str(error), "param": None}
    if isinstance(error, GatewayError) and error.status == 422:
        return {"code": "invalid_adapter", "message": f"The gateway refused the trained adapter: {error.message}",
                "param": None}  # fmt: skip
    return {"code": "training_failed", "message": f"Training failed: {type(error).__name__}: {error}", "param": None}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
