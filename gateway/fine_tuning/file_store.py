"""Where uploaded files and job outputs (results, checkpoints) live: where the adapters live (gateway/adapter_store.py).

Local (`var/files/<id>`) or S3-compatible storage (`s3://bucket/prefix/files/<id>`). A stored file is never
overwritten: a second write under the same id is refused, here and by the object store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

CHUNK = 1 << 20


@dataclass(frozen=True)
class Stored:
    location: str  # kept in the database, never shown
    size: int
    sha256: str


class FileStore(Protocol):
    def put(self, file_id: str, source: IO[bytes]) -> Stored:
        """Copy `source` (from its current position to its end) in as `file_id`."""
        ...

    def read(self, location: str) -> Iterator[bytes]:
        """The file's bytes, in chunks."""
        ...

    def delete(self, location: str) -> None: ...


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, file_id: str, source: IO[bytes]) -> Stored:
        target = self.root / file_id
        self.root.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=self.root, prefix=f".{file_id}-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            os.chmod(staging, stat.S_IRUSR | stat.S_IRGRP)
            os.link(staging, target)  # fails if the id is taken: never overwritten, even by a race
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
        return Stored(str(target), size, digest.hexdigest())

    def read(self, location: str) -> Iterator[bytes]:
        with open(self._path(location), "rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    def delete(self, location: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(location).unlink()

    def _path(self, location: str) -> Path:
        path = Path(location)
        if path.parent != self.root:  # only ever a file this store wrote
            raise ValueError(f"{location} is not in this file store")
        return path


class S3FileStore:
    def __init__(self, uri: str, endpoint_url: str | None = None, client: Any = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"a file store URI looks like s3://bucket/prefix, not {uri!r}")
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.prefix = f"{prefix}/files/" if prefix else "files/"
        if client is None:
            import boto3  # the `s3` extra

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self._s3 = client

    def put(self, file_id: str, source: IO[bytes]) -> Stored:
        # Hashed and sized on the way to a temporary file: S3 wants a seekable body of known length.
        digest, size = hashlib.sha256(), 0
        with tempfile.TemporaryFile() as spool:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            spool.seek(0)
            key = self.prefix + file_id
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=spool, IfNoneMatch="*")  # refused if it exists
        return Stored(f"s3://{self.bucket}/{key}", size, digest.hexdigest())

    def read(self, location: str) -> Iterator[bytes]:
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(location))["Body"]
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    def delete(self, location: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(location))

    def _key(self, location: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not location.startswith(prefix + self.prefix):
            raise ValueError(f"{location} is not in this file store")
        return location[len(prefix) :]


def make_file_store(uri: str, local: Path, endpoint_url: str | None = None) -> FileStore:
    """The store the adapter store's setting names: `local` (files under `local`), or `s3://bucket/prefix`."""
    return LocalFileStore(local) if uri == "local" else S3FileStore(uri, endpoint_url)
