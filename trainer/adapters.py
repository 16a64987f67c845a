"""Packing a trained adapter for upload to the gateway (which unpacks and checks it).

A run that continues the production adapter downloads it from the gateway (`GatewayClient.download_version`), so
the trainer keeps no copies of its own and can run on any machine.
"""

from __future__ import annotations

import tarfile
from pathlib import Path


def pack(adapter_dir: Path, archive: Path) -> Path:
    """A .tar.gz of the adapter directory's files under one top directory, as the gateway's upload takes it."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(adapter_dir.iterdir()):
            if path.is_file():
                tar.add(path, arcname=f"adapter/{path.name}")
    return archive
