"""A run's status at the gateway: its stage, throttled training progress, and the heartbeat that keeps its lock.

Every update is also a heartbeat; a background thread sends one every `heartbeat_s` in between. If the gateway
says the run is already final (it missed heartbeats for longer than its lease and marked the run failed), the run
has lost its lock: `RunLost` is raised at the next update or `check()`, and the cycle stops without promoting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from trainer.gateway_client import GatewayClient, GatewayError, RunFinished
from trainer.progress import TrainingProgress

log = logging.getLogger(__name__)
LOSS_CURVE_POINTS = 200  # the most points of the live loss plot sent with an update


def thinned(points: list[tuple[int, float]], most: int) -> list[tuple[int, float]]:
    """At most `most` of `points`, evenly spaced, the first and the last always among them."""
    if len(points) <= most:
        return list(points)
    return [points[round(i * (len(points) - 1) / (most - 1))] for i in range(most)]


class RunLost(RuntimeError):
    """The gateway ended this run (lease expired): another run may hold the lock now, so nothing may be promoted."""


class RunStatus:
    def __init__(
        self,
        client: GatewayClient,
        tenant: str,
        run_id: str,
        *,
        heartbeat_s: float = 10.0,
        progress_interval_s: float = 3.0,
    ) -> None:
        self.client, self.tenant, self.run_id = client, tenant, run_id
        self.heartbeat_s = heartbeat_s
        self.progress_interval_s = progress_interval_s
        self.current_stage = "starting"
        self.lost: str | None = None
        self._lock = threading.Lock()  # one update on the wire at a time, heartbeat or not
        self._stopped = threading.Event()
        self._last_progress = 0.0
        self._loss_curve: list[tuple[int, float]] = []  # every step's loss of the training stage, for the live plot
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {run_id}", daemon=True)

    def __enter__(self) -> RunStatus:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.heartbeat_s + 5)

    def stage(self, name: str) -> None:
        """A new stage: its progress starts empty, but for the training's loss curve, which stays on the run's page."""
        self.current_stage = name
        self._send(stage=name, progress=self._curve_so_far())

    def progress(self, progress: TrainingProgress) -> None:
        """A `ProgressCallback`: sends the step and loss at most every `progress_interval_s`, and the last step."""
        if progress.step == 0:  # a training begins: its own curve
            self._loss_curve = []
        if progress.loss is not None:
            self._loss_curve.append((progress.step, round(progress.loss, 5)))
        now = time.monotonic()
        last = progress.total_steps > 0 and progress.step >= progress.total_steps
        if not last and now - self._last_progress < self.progress_interval_s:
            self.check()
            return
        self._last_progress = now
        body = {
            "step": progress.step,
            "total_steps": progress.total_steps,
            "epoch": round(progress.epoch, 3),
            "loss": progress.loss,
            "elapsed_s": round(progress.elapsed_s, 1),
            **self._curve_so_far(),
        }
        self._send(progress=body)

    def counted(self, done: int, total: int, elapsed_s: float) -> None:
        """Progress of a stage that is not training (evaluation): items done out of total."""
        now = time.monotonic()
        if done < total and now - self._last_progress < self.progress_interval_s:
            self.check()
            return
        self._last_progress = now
        self._send(
            progress={"step": done, "total_steps": total, "elapsed_s": round(elapsed_s, 1), **self._curve_so_far()}
        )

    def _curve_so_far(self) -> dict[str, Any]:
        return {"loss_curve": thinned(self._loss_curve, LOSS_CURVE_POINTS)} if self._loss_curve else {}

    def candidate(self, version: str) -> None:
        self._send(candidate=version)

    def check(self) -> None:
        if self.lost is not None:
            raise RunLost(self.lost)

    def finish(self, status: str, reason: str, report: dict[str, Any], markdown: str) -> None:
        """The final update (it ends the heartbeat). Retried a few times: a run left running would hold the lock
        until the lease runs out."""
        self._stopped.set()
        body = {"status": status, "reason": reason[:2000], "report": report, "report_markdown": markdown}
        for attempt in range(4):
            try:
                with self._lock:
                    self.client.update_run(self.tenant, self.run_id, stage="done", **body)
                return
            except RunFinished as error:
                raise RunLost(error.message) from error
            except GatewayError as error:
                if attempt == 3:
                    raise
                log.warning("run %s: final update failed (%s); retrying", self.run_id, error)
                time.sleep(2**attempt)

    def _send(self, **changes: Any) -> None:
        self.check()
        try:
            with self._lock:
                self.client.update_run(self.tenant, self.run_id, **changes)
        except RunFinished as error:
            self.lost = error.message
            raise RunLost(error.message) from error
        except GatewayError as error:
            # A blip: the heartbeat keeps trying, and the lease is several heartbeats long.
            log.warning("run %s: status update failed: %s", self.run_id, error)

    def _beat(self) -> None:
        while not self._stopped.wait(self.heartbeat_s):
            try:
                with self._lock:
                    if self._stopped.is_set():
                        return
                    self.client.update_run(self.tenant, self.run_id)
            except RunFinished as error:
                self.lost = error.message
                log.error("run %s lost its lock: %s", self.run_id, error.message)
                return
            except GatewayError as error:
                log.warning("run %s: heartbeat failed: %s", self.run_id, error)
