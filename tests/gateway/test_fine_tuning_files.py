"""`/v1/files` with the official client on the fake-engine gateway: upload, list with OpenAI's cursor, retrieve,
download, delete; other purposes, oversized uploads, other tenants' files and files in use are refused; the stores
never overwrite a file."""

from __future__ import annotations

import io
from pathlib import Path

import openai
import pytest

from gateway.fine_tuning.file_store import LocalFileStore, S3FileStore
from tests.gateway.conftest import BASE
from tests.gateway.fine_tuning_support import chat_line, jsonl, open_env, sdk, upload, wait_status

DATA = jsonl([chat_line() for _ in range(3)])


def test_a_file_is_uploaded_listed_retrieved_downloaded_and_deleted_with_the_official_client(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))

        created = client.files.create(file=("train.jsonl", DATA), purpose="fine-tune")

        assert created.id.startswith("file-") and created.object == "file"
        assert (created.bytes, created.filename, created.purpose, created.status) == (
            len(DATA), "train.jsonl", "fine-tune", "processed",
        )  # fmt: skip
        assert client.files.retrieve(created.id) == created
        assert [f.id for f in client.files.list()] == [created.id]
        assert client.files.content(created.id).read() == DATA
        deleted = client.files.delete(created.id)
        assert (deleted.id, deleted.deleted) == (created.id, True)
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(created.id)
        assert list((env.settings.var_dir / "files").iterdir()) == []  # the bytes went too


@pytest.mark.parametrize("purpose", ["assistants", "batch", "vision", "user_data", "evals"])
def test_a_purpose_other_than_fine_tune_is_refused_and_nothing_is_stored(tmp_path: Path, purpose: str):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        with pytest.raises(openai.BadRequestError) as refused:
            client.files.create(file=("train.jsonl", DATA), purpose=purpose)  # type: ignore[arg-type]
        assert refused.value.body["param"] == "purpose"  # type: ignore[index]
        assert client.files.list().data == []


def test_a_file_that_is_not_jsonl_is_refused(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
            client.files.create(file=("train.csv", DATA), purpose="fine-tune")


def test_a_file_over_the_size_limit_is_refused_with_413_declared_or_streamed(tmp_path: Path):
    with open_env(tmp_path, {"max_file_bytes": 1000}) as env:
        key = env.tenant_with_key("acme")
        client = sdk(env, key)
        with pytest.raises(openai.APIStatusError) as refused:
            client.files.create(file=("train.jsonl", b"x" * 1001), purpose="fine-tune")
        assert refused.value.status_code == 413

        # A chunked body declares no length: it is refused by counting as it is read (the declared check cannot).
        def body():
            boundary = b"--b\r\n"
            yield boundary + b'Content-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            yield boundary + b'Content-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
            for _ in range(1000):
                yield b"y" * 1000
            yield b"\r\n--b--\r\n"

        response = env.client.post(
            "/v1/files",
            content=body(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert client.files.list().data == []
        assert not list((env.settings.var_dir / "files").glob("*"))


def test_files_are_listed_newest_first_by_pages_in_either_order_and_by_purpose(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        ids = [upload(client, DATA, f"f{n}.jsonl") for n in range(5)]

        first = client.files.list(limit=2)
        assert [f.id for f in first.data] == ids[:-3:-1] and first.has_more
        assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # the SDK follows `after` to the end
        assert [f.id for f in client.files.list(order="asc", limit=3)] == ids
        assert [f.id for f in client.files.list(after=ids[2], order="asc")] == ids[3:]
        assert client.files.list(purpose="fine-tune-results").data == []
        assert len(client.files.list(purpose="fine-tune").data) == 5


def test_another_tenants_file_is_not_found_for_every_operation(tmp_path: Path):
    with open_env(tmp_path) as env:
        owner = sdk(env, env.tenant_with_key("acme"))
        other = sdk(env, env.tenant_with_key("globex"))
        file_id = upload(owner, DATA)

        for call in (other.files.retrieve, other.files.content, other.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(file_id)
        assert other.files.list().data == []
        with pytest.raises(openai.NotFoundError):
            other.fine_tuning.jobs.create(model=BASE, training_file=file_id)
        assert owner.files.retrieve(file_id).id == file_id  # untouched


def test_a_file_that_an_unfinished_job_reads_cannot_be_deleted_until_the_job_ends(tmp_path: Path):
    with open_env(tmp_path) as env:
        client = sdk(env, env.tenant_with_key("acme"))
        file_id = upload(client, DATA)
        job = wait_status(client, client.fine_tuning.jobs.create(model=BASE, training_file=file_id).id, "queued")

        with pytest.raises(openai.ConflictError, match=job.id):
            client.files.delete(file_id)
        client.fine_tuning.jobs.cancel(job.id)
        assert client.files.delete(file_id).deleted


def test_the_local_store_never_overwrites_a_file(tmp_path: Path):
    store = LocalFileStore(tmp_path / "files")
    stored = store.put("file-1", io.BytesIO(b"first"))
    with pytest.raises(FileExistsError):
        store.put("file-1", io.BytesIO(b"second"))
    assert b"".join(store.read(stored.location)) == b"first"
    assert [p.name for p in (tmp_path / "files").iterdir()] == ["file-1"]  # no staging file left behind


def test_the_s3_store_keeps_files_beside_the_adapters_and_never_overwrites_one(s3):
    url, client, bucket = s3
    store = S3FileStore(f"s3://{bucket}/loraflow", endpoint_url=url)
    stored = store.put("file-1", io.BytesIO(b"first"))

    assert stored.location == f"s3://{bucket}/loraflow/files/file-1" and stored.size == 5
    with pytest.raises(Exception, match=r"PreconditionFailed|412"):
        store.put("file-1", io.BytesIO(b"second"))
    assert b"".join(store.read(stored.location)) == b"first"
    store.delete(stored.location)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
