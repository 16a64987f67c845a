"""When the record's database is unavailable: completions are refused (503) once the writer's queue is full, and a
completion waiting in the spill is a 503 to retry for feedback, never a 404."""

from __future__ import annotations

import pytest

from tests.gateway.record_support import complete, count, gateway, open_env, rate, sdk, sqlite_locked, wait_until


def test_a_full_record_refuses_completions_with_503_and_serves_nothing_unrecorded(tmp_path):
    spill_is_a_file = tmp_path / "spill"
    spill_is_a_file.write_text("where the spill directory should be: spilling fails too")
    record = {"max_queue": 2, "write_timeout_s": 0.1, "retry_interval_s": 0.1, "spill_dir": spill_is_a_file}
    with open_env(tmp_path, record=record) as env:
        key = env.tenant_with_key("acme")
        complete(env, key)  # the key is now cached: the locked database is not read for it
        served = 1
        with sqlite_locked(env):
            for _ in range(20):
                response = env.client.post(
                    "/v1/chat/completions",
                    json={"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                if response.status_code != 200:
                    break
                served += 1
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
            assert len(env.engine.requests) == served  # the refused request never reached the engine
            assert gateway(env).recorder.writer.stats().backpressure >= 1
        # The database is back: every completion that was served is recorded, and nothing else.
        wait_until(lambda: count(env) == served)


@pytest.mark.parametrize("stream", [False, True])
def test_feedback_for_a_spilled_completion_is_503_then_accepted_once_the_database_is_back(tmp_path, stream):
    record = {"write_timeout_s": 0.1, "retry_interval_s": 0.2, "lookup_wait_s": 0.3}
    with open_env(tmp_path, record=record) as env:
        key = env.tenant_with_key("acme")
        complete(env, key)
        with sqlite_locked(env):
            completion_id = _streamed(env, key) if stream else complete(env, key)[0]
            wait_until(lambda: gateway(env).recorder.writer.stats().spilled >= 1)
            response = rate(env, key, completion_id=completion_id, rating="up")
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            assert "try again" in response.json()["error"]["message"]
        accepted = wait_until(lambda: rate(env, key, completion_id=completion_id, rating="up").status_code == 201)
        assert accepted


def _streamed(env, key: str) -> str:
    with sdk(env, key).chat.completions.with_streaming_response.create(
        model="tiny-random", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        return next(iter(response.parse())).id


def test_forgetting_a_user_while_the_record_is_spilling_is_503(tmp_path):
    record = {"write_timeout_s": 0.1, "retry_interval_s": 5.0}
    with open_env(tmp_path, record=record) as env:
        key = env.tenant_with_key("acme")
        complete(env, key)
        with sqlite_locked(env):
            complete(env, key, user="jane")
            wait_until(lambda: gateway(env).recorder.writer.stats().spilling)
            response = env.admin("DELETE", "/tenants/acme/users/jane")
            assert response.status_code == 503 and "retry-after" in response.headers
