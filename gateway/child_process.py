"""A command run as a supervised child process: started, restarted when it dies, stopped with us.

Used for the vLLM engine and the trainer's scheduler. The child gets its own process group and is stopped as a
group (SIGTERM, then SIGKILL), since vLLM starts helper processes of its own. On Linux it is also told to die with
its parent, so even a SIGKILL of the gateway leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildProcess:
    """Runs `command` until stopped, restarting it (with backoff) whenever it exits on its own."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = False

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        self.starts += 1
        log.info("%s started (pid %d), log: %s", self.name, self.process.pid, self.log_path)

    async def supervise(self) -> None:
        """Keep it running; returns only when `stop` was called."""
        backoff = 1.0
        while not self._stopping:
            if self.process is None:
                self.start()
            assert self.process is not None
            code = await asyncio.to_thread(self.process.wait)
            if self._stopping:
                return
            log.error("%s exited with code %s; restarting in %.0f s (see %s)", self.name, code, backoff, self.log_path)
            self._kill_group(signal.SIGKILL)  # helpers it left behind
            self.process = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            self._kill_group(signal.SIGKILL)
            return
        self._kill_group(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
        self._kill_group(signal.SIGKILL)
        self.process.wait()

    def _kill_group(self, sig: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
