"""Where adapter versions' files live. Versions are immutable: a stored version is never overwritten.

Local directory by default (`var/adapters/<version id>/`), which the engine reads directly, so an engine on
another machine needs the same directory mounted at the same path (DESIGN.md, scale-out). Or S3-compatible
object storage (`s3://bucket/prefix`): the versions live there, and each gateway copies a version into its local
directory before it asks an engine to load it (vLLM loads adapters from local paths only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


class AdapterStore(Protocol):
    def put(self, version_id: str, source: Path) -> str:
        """Copy the adapter at `source` in as `version_id`; returns the artifact reference kept in the registry."""
        ...

    async def engine_path(self, artifact: str) -> str:
        """A path the engine can load the adapter from."""
        ...

    def delete(self, artifact: str) -> None:
        """Remove a version that never finished registering."""
        ...


class LocalAdapterStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, version_id: str, source: Path) -> str:
        target = self.root / version_id
        if target.exists():
            raise FileExistsError(f"adapter version {version_id} is already stored")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{version_id}-"))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True, symlinks=False)
            for path in staging.rglob("*"):
                if path.is_file():
                    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # immutable by intent, read-only on disk
            os.rename(staging, target)  # atomic: a reader sees the whole version or nothing
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return str(target)

    async def engine_path(self, artifact: str) -> str:
        return artifact

    def delete(self, artifact: str) -> None:
        path = Path(artifact)
        if path.parent == self.root:
            shutil.rmtree(path, ignore_errors=True)


class S3AdapterStore:
    """Versions as objects under `s3://bucket/prefix/<version id>/`; a local, read-only copy for the engine."""

    def __init__(self, uri: str, local: Path, endpoint_url: str | None = None, client: Any = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"an adapter store URI looks like s3://bucket/prefix, not {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if client is None:
            import boto3  # the `s3` extra; endpoint and credentials also come from the usual AWS_* variables

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self._s3 = client
        self._local = LocalAdapterStore(local)

    def put(self, version_id: str, source: Path) -> str:
        prefix = self._key(version_id)
        if self._s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"):
            raise FileExistsError(f"adapter version {version_id} is already stored")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            with path.open("rb") as body:
                # Refused by the server if the object exists: a version is never overwritten, even by a race.
                self._s3.put_object(
                    Bucket=self.bucket, Key=prefix + str(path.relative_to(source)), Body=body, IfNoneMatch="*"
                )
        return f"s3://{self.bucket}/{prefix.rstrip('/')}"

    async def engine_path(self, artifact: str) -> str:
        version_id = artifact.rstrip("/").rsplit("/", 1)[-1]
        local = self._local.root / version_id
        if not local.is_dir():
            await asyncio.to_thread(self._fetch, version_id)
        return str(local)

    def delete(self, artifact: str) -> None:
        version_id = artifact.rstrip("/").rsplit("/", 1)[-1]
        for key in self._keys(self._key(version_id)):
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        self._local.delete(str(self._local.root / version_id))

    def _fetch(self, version_id: str) -> None:
        prefix = self._key(version_id)
        with tempfile.TemporaryDirectory(prefix="loraflow-fetch-") as tmp:
            for key in self._keys(prefix):
                target = Path(tmp) / key[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(self.bucket, key, str(target))
            with contextlib.suppress(FileExistsError):  # another engine's load fetched it meanwhile
                self._local.put(version_id, Path(tmp))

    def _keys(self, prefix: str) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def _key(self, version_id: str) -> str:
        return f"{self.prefix}/{version_id}/" if self.prefix else f"{version_id}/"


def make_store(uri: str, local: Path, endpoint_url: str | None = None) -> AdapterStore:
    """The store a settings value names: `local`, or `s3://bucket/prefix`."""
    return LocalAdapterStore(local) if uri == "local" else S3AdapterStore(uri, local, endpoint_url)
