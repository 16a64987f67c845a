"""`loraflow up` as a user runs it: a supervised vLLM child, the CLI, an engine killed and brought back, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.e2e.stack import HELLO, free_port, wait_for

pytestmark = pytest.mark.e2e
LOFRAFLOW = str(Path(sys.executable).with_name("loraflow"))


def test_up_supervises_the_engine_and_ctrl_c_leaves_nothing_behind(tmp_path, tiny_model, adapter_dirs):
    var = tmp_path / "var"
    shutil.copytree(tiny_model, var / "models" / "tiny-random")  # the cached build: `up` finds it and skips building
    port = free_port()
    env = {
        **os.environ,
        "LORAFLOW_VAR_DIR": str(var),
        "LORAFLOW_BASE_MODEL": "tiny-random",
        "LORAFLOW_PORT": str(port),
        "LORAFLOW_ENGINE__PORT": str(free_port()),
        "LORAFLOW_ENGINE__HEALTH_INTERVAL_S": "0.5",
        "LORAFLOW_ENGINE__MAX_MODEL_LEN": "2048",
        "LORAFLOW_ENGINE__CPU_THREADS_BIND": "1",  # the session's engine has core 0
        "LORAFLOW_GATEWAY_URL": f"http://127.0.0.1:{port}",
    }
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([LOFRAFLOW, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/ready", 300)
        key = (var / "demo-key").read_text().strip()
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        assert client.chat.completions.create(model="tiny-random", messages=HELLO, max_tokens=3).usage

        cli = [LOFRAFLOW, "adapters"]
        run = {"env": env, "cwd": tmp_path, "check": True, "capture_output": True, "text": True}
        registered = subprocess.run([*cli, "register", "demo", "support", str(adapter_dirs["alpha"])], **run)
        assert "support@1" in registered.stdout
        subprocess.run([*cli, "promote", "demo", "support", "1"], **run)
        assert _answer(client) == "ALPHA"

        engine = _engine_process(up.pid)
        _kill_during_a_long_stream(client, engine)
        with pytest.raises(openai.InternalServerError) as caught:
            _answer_soon(client)
        assert caught.value.status_code == 503 and int(caught.value.response.headers["retry-after"]) > 0
        assert httpx.get(f"{url}/health").status_code == 200  # the gateway stays up

        # A request can fail on a dead pooled connection before the health checks notice: wait for them to.
        _wait_until_not_ready(url)
        wait_for(f"{url}/ready", 300)  # supervised restart, adapters loaded again by the gateway itself
        assert _answer(client) == "ALPHA"
        restarted = _engine_process(up.pid)
        assert restarted.pid != engine.pid
        family = [up.pid] + [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
    except BaseException:
        print((tmp_path / "up.log").read_text()[-6000:])  # pytest shows it with the failure
        raise
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
        log.close()
    survivors = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], (tmp_path / "up.log").read_text()[-3000:]
    assert "loraflow stopped" in (tmp_path / "up.log").read_text()


def _answer(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model="support", messages=HELLO, temperature=0, max_tokens=5)
    return reply.choices[0].message.content


def _kill_during_a_long_stream(client: openai.OpenAI, engine: psutil.Process) -> None:
    """SIGKILL the engine 1 s into a 1,500-token stream.

    Usually the client has its first chunks by then, and gets one SSE error event. On this CPU the engine sometimes
    holds a whole generation back (its HTTP side sends nothing until the end): then no byte has reached the client,
    and the gateway answers 503 instead. Both are the gateway telling the client the engine died. Once, in a
    fresh-clone run, the whole stream was over within the second: then it must have carried every token (the SSE
    error event is also covered by test_an_error_after_the_stream_started_is_one_error_event_then_done)."""
    killer = threading.Timer(1.0, os.killpg, (engine.pid, signal.SIGKILL))
    killer.start()
    try:
        stream = client.chat.completions.create(
            model="support", messages=HELLO, max_tokens=1500, stream=True, extra_body={"ignore_eos": True}
        )
        try:
            chunks = list(stream)
        except openai.APIError as broken:  # one SSE error event after the stream started
            assert "stopped while streaming" in str(broken)
        else:
            assert chunks[-1].choices[0].finish_reason == "length", "a stream cut short without an error event"
    except openai.InternalServerError as refused:
        assert refused.status_code == 503
    finally:
        killer.join()


def _answer_soon(client: openai.OpenAI) -> None:
    """Ask until the gateway has noticed the engine is gone (at most one health interval)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(openai.APIConnectionError):
            _answer(client)
        time.sleep(0.2)


def _wait_until_not_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/ready").status_code == 200:
        assert time.monotonic() < deadline, "the gateway never noticed the engine was gone"
        time.sleep(0.1)


def _engine_process(up_pid: int) -> psutil.Process:
    for child in psutil.Process(up_pid).children():
        if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no supervised vLLM child")
