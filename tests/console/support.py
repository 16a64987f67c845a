"""Helpers of the console's tests: signing in as someone, a stored training run with a realistic report, and the
console's routes with what each needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from gateway.console.access import COOKIE


@dataclass
class Session:
    """One signed-in browser, without a browser: its own cookie, sent by hand."""

    client: TestClient
    cookie: str | None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=self._headers(kwargs), follow_redirects=False, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, data=data, headers=self._headers(kwargs), follow_redirects=False, **kwargs)

    def csrf(self, page: str = "/console/") -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.get(page).text)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def change(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A form post with the session's CSRF token, as the page's form sends it."""
        return self.post(path, {"csrf_token": self.csrf(), **(data or {})})

    def _headers(self, kwargs: dict[str, Any]) -> dict[str, str]:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.cookie:
            headers["cookie"] = f"{COOKIE}={self.cookie}"
        return headers


def sign_in(client: TestClient, key: str) -> Session:
    page = client.get("/console/sign-in")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/console/sign-in",
        data={"key": key, "token": token, "next": "/console/"},
        headers={"cookie": f"lf_console_sign_in={token}"},
        follow_redirects=False,
    )
    client.cookies.clear()  # each Session carries its own cookie
    assert response.status_code == 303, response.text
    return Session(client, session_cookie(response))


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{COOKIE}="):
            return header.split(";", 1)[0].split("=", 1)[1] or None
    return None


def realistic_report(run_id: str, tenant: str, alias: str, steps: int = 24) -> dict[str, Any]:
    """A report as trainer/report.py writes it (RunReport.model_dump(mode="json")), promoted."""
    started = datetime(2025, 3, 1, 3, tzinfo=UTC)
    losses = [round(2.5 * 0.85**step + 0.05, 4) for step in range(steps)]
    settings = {"method": "sft", "rank": 16, "alpha": 32, "epochs": 3.0, "learning_rate": 0.001, "batch_size": 8}
    return {
        "run_id": run_id, "tenant": tenant, "adapter": alias, "status": "promoted",
        "reason": "held-out exact +0.62 (95% interval +0.51 to +0.73) over 40 items; no golden item regressed",
        "started_at": started.isoformat(), "finished_at": (started + timedelta(minutes=2)).isoformat(),
        "candidate_version": f"{alias}@2", "production_version": f"{alias}@1",
        "data": {"train": 160, "held_out": 40, "golden": 20, "thumbs_up": 120, "thumbs_down": 80, "corrections": 60,
                 "duplicates_removed": 3, "new_since_last_run": 200, "rated_interactions": 200,
                 "left_out": {"no answer to learn": 2}},
        "settings": settings,
        "training": {"method": "sft", "adapter_dir": "/never/shown", "base_model": "tiny-random",
                     "parent_adapter": None, "started_from": "scratch", "dataset_hash": "sha256:" + "ab" * 32,
                     "num_examples": 160,
                     "settings": settings, "steps": steps, "epochs": 3.0, "final_loss": losses[-1],
                     "mean_loss": sum(losses) / steps, "losses": losses, "tokens": 9000, "duration_s": 8.2,
                     "total_s": 9.0, "cpu_s": 8.0, "tokens_per_s": 1100.0, "device": "cpu", "dtype": "float32",
                     "versions": {}, "notes": []},
        "scores": [
            {"split": "golden", "scorer": "exact", "n": 20, "candidate": 0.95, "incumbent": 0.9, "delta": 0.05,
             "ci_low": -0.05, "ci_high": 0.15},
            {"split": "held_out", "scorer": "exact", "n": 40, "candidate": 0.9, "incumbent": 0.28, "delta": 0.62,
             "ci_low": 0.51, "ci_high": 0.73},
        ],
        "decision": {"promote": True, "reason": "held-out gain beyond noise", "incumbent": "production",
                     "held_out": {"n": 40, "candidate_mean": 0.9, "incumbent_mean": 0.28, "mean_delta": 0.62,
                                  "low": 0.51, "high": 0.73, "confidence": 0.95},
                     "golden_items": 20, "golden_regressions": [], "policy": {"confidence": 0.95}},
        "samples": [{"item_id": "h1", "split": "held_out", "prompt": "My card was charged twice", "expected": "billing",
                     "incumbent": "shipping", "candidate": "billing", "incumbent_score": 0.0, "candidate_score": 1.0}],
        "dataset_hash": "sha256:" + "ab" * 32,
        "notes": ["started from scratch: there is no production adapter yet"],
        "timings": {"dataset": 0.4, "train": 8.2, "register": 0.3, "evaluate": 9.5, "gate": 0.1},
    }  # fmt: skip
