"""The fine-tuning API's work: storing files, creating jobs and checking their files in the background, keeping the
model of a job that succeeded (a new adapter version, served at once under its `ft:` name), and the loop that
finds jobs whose trainer was lost. The database and the file store are reached off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from typing import IO, Any, Literal

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import registry
from gateway.auth import Caller
from gateway.catalog import CatalogHolder
from gateway.errors import BadRequest, Conflict, ModelNotFound, NotFound
from gateway.fine_tuning import files, jobs, queue
from gateway.fine_tuning.file_store import FileStore
from gateway.fine_tuning.protocol import CreateFineTuningJobRequest, FileObject, FineTuningJob
from gateway.fine_tuning.runner_protocol import CheckpointRef, ClaimedJob, ParentVersion
from gateway.fine_tuning.uploads import read_upload
from gateway.fine_tuning.validation import InvalidFile, check_file
from gateway.lifecycle import AdapterLifecycle
from gateway.request_body import read_json
from gateway.settings import Settings
from gateway.store.models import Adapter, AdapterVersion, FineTuningCheckpoint, StoredFile, utcnow
from gateway.store.models import FineTuningJob as JobRow

log = logging.getLogger(__name__)

FINE_TUNED = "fine_tuned_model"  # the alias option naming a job's model: {"name": "ft:...", "version": n}
RESULTS_FILENAME = "step_metrics.csv"


class FineTuning:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        store: FileStore,
        catalog: CatalogHolder,
        adapters: AdapterLifecycle,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self._catalog = catalog
        self._adapters = adapters
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def lease_s(self) -> float:
        return self.settings.training.lease_s  # read per call: the e2e tests shorten it

    # Files.

    async def upload(self, request: Request, caller: Caller) -> FileObject:
        limit = self.settings.fine_tuning.max_file_bytes
        async with read_upload(request, limit) as upload:
            if upload.purpose != "fine-tune":
                raise BadRequest(f"Unsupported purpose {upload.purpose!r}: this gateway stores fine-tuning data only "
                                 "(purpose `fine-tune`).", param="purpose")  # fmt: skip
            if not upload.filename.endswith(".jsonl"):
                raise BadRequest("Invalid file format for Fine-Tuning API. Must be .jsonl", param="file")
            file_id = files.new_file_id()
            await upload.file.seek(0)
            stored = await asyncio.to_thread(self.store.put, file_id, upload.file.file)
        try:
            row = await asyncio.to_thread(
                self._write, files.add_file, file_id, caller.tenant_id, "fine-tune", upload.filename, stored
            )
        except BaseException:
            await asyncio.to_thread(self.store.delete, stored.location)
            raise
        return files.file_object(row)

    def content(self, tenant_id: str, file_id: str) -> Iterator[bytes]:
        """The file's bytes (a plain iterator: the response reads it in the thread pool)."""
        with self.sessions() as session:
            row = files.get_file(session, tenant_id, file_id)
        return self.store.read(row.location)

    def delete(self, tenant_id: str, file_id: str) -> None:
        with self.sessions() as session:
            location = files.delete_file(session, tenant_id, file_id)
        self.store.delete(location)

    # Jobs.

    async def create_job(self, request: Request, caller: Caller) -> FineTuningJob:
        body, _ = await read_json(request, CreateFineTuningJobRequest, self.settings.max_request_bytes)
        if body.integrations:
            raise BadRequest("Integrations (Weights and Biases) are not available here.", param="integrations")
        parent = self._parent(caller, body.model)
        job = await asyncio.to_thread(self._add_job, caller.tenant_id, body, parent)
        self.check_soon(job.id)
        return jobs.job_object(job)

    def _parent(self, caller: Caller, model: str) -> str | None:
        """The adapter version a job continues (`support@3`), or None for the base model; from the catalog."""
        name = caller.model_map.get(model, model)
        if name == self.settings.public_model_name:
            return None
        try:
            version = self._catalog.current.resolve(caller.tenant_id, name)[1]
        except ModelNotFound:
            raise ModelNotFound(model) from None
        return version.public_name if version is not None else None

    def _add_job(self, tenant_id: str, body: CreateFineTuningJobRequest, parent: str | None) -> JobRow:
        with self.sessions() as session:
            for param in ("training_file", "validation_file"):
                file_id = getattr(body, param)
                if file_id is not None:
                    row = files.get_file(session, tenant_id, file_id, param=param)
                    if row.purpose != "fine-tune":
                        raise BadRequest(f"File {file_id} has purpose {row.purpose!r}; a job trains on files "
                                         "uploaded with purpose `fine-tune`.", param=param)  # fmt: skip
            seed = body.seed if body.seed is not None else secrets.randbelow(2_147_483_647)
            return jobs.add_job(session, job_id=jobs.new_job_id(), tenant_id=tenant_id, request=body, parent=parent,
                                seed=seed)  # fmt: skip

    def check_soon(self, job_id: str) -> None:
        """Check the job's files in the background; it moves to `queued`, or to `failed` naming the bad line."""
        task = asyncio.get_running_loop().create_task(self.check_files(job_id), name=f"check {job_id}")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def check_files(self, job_id: str) -> None:
        try:
            await asyncio.to_thread(self._check_files, job_id)
        except Exception:  # a store or database blip: the job stays `validating_files`, checked at the next start
            log.exception("fine-tuning job %s: its files could not be checked", job_id)

    def _check_files(self, job_id: str) -> None:
        with self.sessions() as session:
            job = session.get(JobRow, job_id)
            if job is None or job.status != "validating_files":
                return
            method: Literal["supervised", "dpo"] = "dpo" if job.method.get("type") == "dpo" else "supervised"
            wanted = [("training_file", job.training_file, self.settings.fine_tuning.min_examples)]
            if job.validation_file:
                wanted.append(("validation_file", job.validation_file, 1))
            locations = {param: session.get(StoredFile, file_id) for param, file_id, _ in wanted}
        found: dict[str, Any] = {}
        error: dict[str, Any] | None = None
        for param, file_id, minimum in wanted:
            row = locations[param]
            kind = param.split("_")[0]
            try:
                if row is None:
                    raise InvalidFile(f"The file {file_id} was deleted before it could be checked.")
                checked = check_file(self.store.read(row.location), method, minimum)
            except InvalidFile as invalid:
                message = f"The job failed due to an invalid {kind} file ({file_id}). {invalid.message}"
                error = {"code": f"invalid_{param}", "message": message, "param": param}
                break
            found[kind] = {"file": file_id, "format": checked.format, "examples": checked.examples}
        with self.sessions() as session:
            job = session.get(JobRow, job_id)
            if job is None or job.status != "validating_files":  # cancelled meanwhile, or checked by another replica
                return
            if error is None:
                job.status, job.data = "queued", found
                jobs.add_event(session, job, "Files validated, moving job to queued state", data=found)
            else:
                job.status, job.error, job.finished_at = "failed", error, utcnow()
                jobs.add_event(session, job, error["message"], level="error")
            session.commit()

    # The trainer's side (admin API).

    def claim(self, runner: str) -> ClaimedJob | None:
        with self.sessions() as session:
            job = queue.claim(session, runner, self.lease_s, self.settings.fine_tuning)
            if job is None:
                return None
            checkpoint = queue.last_checkpoint(session, job.id)
            parent = None
            if job.parent:
                alias, _, number = job.parent.rpartition("@")
                parent = ParentVersion(alias=alias, version=int(number), name=job.parent)
            assert job.run_id is not None
            return ClaimedJob(
                id=job.id,
                tenant_id=job.tenant_id,
                run_id=job.run_id,
                attempt=job.attempts,
                base_model=self.settings.public_model_name,
                model=job.model,
                parent=parent,
                training_file=job.training_file,
                validation_file=job.validation_file,
                method=job.method,
                seed=job.seed,
                fine_tuned_model=self.fine_tuned_name(job),
                resume_from=_checkpoint_ref(checkpoint),
                data=job.data,
            )

    def fine_tuned_name(self, job: JobRow) -> str:
        return jobs.fine_tuned_name(self.settings.public_model_name, job.tenant_id, job.suffix, job.id)

    def job_file(self, job_id: str, file_id: str) -> Iterator[bytes]:
        """A training or validation file of a job, for the trainer that runs it."""
        with self.sessions() as session:
            job = session.get(JobRow, job_id)
            if job is None or file_id not in (job.training_file, job.validation_file):
                raise NotFound(f"Job {job_id} has no file {file_id}.", param="file_id")
            row = files.get_file(session, job.tenant_id, file_id)
        return self.store.read(row.location)

    def add_checkpoint(self, job_id: str, run_id: str, step: int, metrics: dict[str, Any], archive: IO[bytes]) -> Any:
        with self.sessions() as session:
            job = queue.job_of_run(session, job_id, run_id, self.lease_s)
            checkpoint_id = "ftckpt_" + secrets.token_hex(12)
            stored = self.store.put(checkpoint_id, archive)
            try:
                name = f"{self.fine_tuned_name(job)}:ckpt-step-{step}"
                return queue.add_checkpoint(session, job, checkpoint_id, step, metrics, name, stored.location)
            except BaseException:
                self.store.delete(stored.location)
                raise

    def checkpoint_archive(self, job_id: str, checkpoint_id: str) -> Iterator[bytes]:
        with self.sessions() as session:
            checkpoint = queue.last_checkpoint(session, job_id)
            if checkpoint is None or checkpoint.id != checkpoint_id:  # only the last one: the one a job resumes from
                raise NotFound(f"Job {job_id} has no last checkpoint {checkpoint_id}.", param="checkpoint_id")
            location = checkpoint.location
        return self.store.read(location)

    async def complete(
        self, job_id: str, run_id: str, adapter: IO[bytes], results: IO[bytes] | None, summary: dict[str, Any]
    ) -> FineTuningJob:
        """Keep the model of a job that trained: a new adapter version under the job's own alias (the job id),
        promoted there, so its `ft:` name serves it at once; the metrics CSV becomes the job's result file."""
        job = await asyncio.to_thread(self._read, queue.job_of_run, job_id, run_id, self.lease_s)
        if job.status != "running":
            raise Conflict(f"Job {job_id} is {job.status}; its model is not kept.", code=f"job_{job.status}")
        name = self.fine_tuned_name(job)
        number = await asyncio.to_thread(self._registered_number, job)
        if number is None:  # not registered by an earlier attempt of this request (a promotion that failed)
            lineage = {
                **(summary.get("lineage") or {}),
                "fine_tuning_job": job.id,
                FINE_TUNED: name,
                "parent": job.parent,
                "base_model": self.settings.public_model_name,
                "training_file": job.training_file,
                "validation_file": job.validation_file,
                "seed": job.seed,
            }
            version = await self._adapters.register_archive(job.tenant_id, job.id, adapter, lineage)
            number = version.number
        await self._adapters.promote(job.tenant_id, job.id, number, reason=f"fine-tuning job {job.id}")
        await asyncio.to_thread(self._name_model, job.tenant_id, job.id, name, number)
        await self._catalog.refresh()
        result_file = await asyncio.to_thread(self._store_results, job.tenant_id, results) if results else None
        try:
            done = await asyncio.to_thread(
                self._read, queue.succeed, job_id, run_id, self.lease_s,
                fine_tuned_model=name, result_file=result_file, trained_tokens=summary.get("trained_tokens"),
            )  # fmt: skip
        except BaseException:
            if result_file:
                await asyncio.to_thread(self.delete, job.tenant_id, result_file)
            raise
        return jobs.job_object(done)

    def _registered_number(self, job: JobRow) -> int | None:
        with self.sessions() as session:
            adapter = session.scalar(select(Adapter).where(Adapter.tenant_id == job.tenant_id, Adapter.alias == job.id))
            if adapter is None:
                return None
            versions = registry.list_versions(session, adapter)
            return versions[-1].number if versions else None

    def _name_model(self, tenant_id: str, alias: str, name: str, number: int) -> None:
        with self.sessions() as session:
            registry.update_options(session, tenant_id, alias, {FINE_TUNED: {"name": name, "version": number}})

    def _store_results(self, tenant_id: str, results: IO[bytes]) -> str:
        file_id = files.new_file_id()
        stored = self.store.put(file_id, results)
        with self.sessions() as session:
            files.add_file(session, file_id, tenant_id, "fine-tune-results", RESULTS_FILENAME, stored)
        return file_id

    async def promote(self, tenant_id: str, job_id: str, alias: str, reason: str, promote: bool) -> AdapterVersion:
        """A succeeded job's model as the next version of a tenant alias, promoted (or only staged, for the
        trainer's evaluation gate). The job's own name keeps serving the job's version."""
        job = await asyncio.to_thread(self._read, jobs.get_job, tenant_id, job_id)
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise BadRequest(f"Job {job_id} is {job.status}; only a succeeded job's model can be promoted.",
                             param="fine_tuning_job_id")  # fmt: skip
        source = self._catalog.current.resolve(tenant_id, job.fine_tuned_model)[1]
        assert source is not None
        archive = await self._adapters.archive(tenant_id, source.alias, source.number)
        try:
            lineage = {"fine_tuning_job": job.id, FINE_TUNED: job.fine_tuned_model, "copied_from": source.public_name}
            with archive.open("rb") as handle:
                version = await self._adapters.register_archive(tenant_id, alias, handle, lineage)
        finally:
            archive.unlink(missing_ok=True)
        if not promote:
            return version
        why = reason or f"fine-tuning job {job.id} ({job.fine_tuned_model})"
        return await self._adapters.promote(tenant_id, alias, version.number, why)

    # Background.

    async def run(self) -> None:
        """Check the files of jobs a stopped gateway left `validating_files`, then look for lost trainers' jobs
        every `expire_interval_s`; runs until cancelled."""
        try:
            for job_id in await asyncio.to_thread(self._unchecked):
                self.check_soon(job_id)
            while True:
                await asyncio.sleep(self.settings.fine_tuning.expire_interval_s)
                try:
                    await asyncio.to_thread(self._read, queue.expire_lost, self.lease_s, self.settings.fine_tuning)
                except Exception:  # a database blip must not end the loop
                    log.exception("fine-tuning: looking for lost jobs failed")
        finally:
            for task in list(self._checks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._checks, return_exceptions=True)

    def _unchecked(self) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(JobRow.id).where(JobRow.status == "validating_files")))

    # Plumbing.

    def _read(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        with self.sessions() as session:
            return func(session, *args, **kwargs)

    _write = _read


def _checkpoint_ref(checkpoint: FineTuningCheckpoint | None) -> CheckpointRef | None:
    if checkpoint is None:
        return None
    return CheckpointRef(id=checkpoint.id, step_number=checkpoint.step_number, metrics=checkpoint.metrics)
