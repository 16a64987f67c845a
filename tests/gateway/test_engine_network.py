"""Completions over the network, as in production: aiohttp to a fake engine listening on a real port.

The other gateway tests put the fake engine behind httpx's transport (no socket); these check that the aiohttp
path (gateway/engine/transport.py) keeps the same contract, and that closing a stream early closes its connection,
which is how the engine learns that the client went away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.engine.transport import AiohttpTransport, ConnectFailed, HttpxTransport
from gateway.settings import EngineSettings, Settings
from tests.fake_engine import FakeEngine
from tests.gateway.conftest import BASE, Env, fake_adapter, make_settings
from tests.gateway.network_support import Served

MESSAGES = [{"role": "user", "content": "hello"}]


def on_engines(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"engine": EngineSettings(urls=[url], health_interval_s=0.05)})


@pytest.fixture
def net(tmp_path) -> Iterator[Env]:
    engine = FakeEngine(BASE)
    with Served(engine.app) as url:
        settings = on_engines(make_settings(tmp_path), url)
        with TestClient(create_app(settings)) as client:  # no transport: the network, through aiohttp
            env = Env(client, engine, settings)
            env.wait_ready()
            yield env


@pytest.fixture
def key(net, tmp_path) -> str:
    key = net.tenant_with_key("acme")
    assert net.register("acme", "support", fake_adapter(tmp_path / "a1")).status_code == 201
    assert net.admin("POST", "/tenants/acme/adapters/support/promote", json={"version": 1}).status_code == 200
    return key


def sdk(env: Env, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=env.client, max_retries=0)


def test_completions_go_through_aiohttp_when_no_transport_is_given(net, key):
    assert isinstance(net.client.app.state.gateway.pool._transport, AiohttpTransport)


def test_chat_over_the_network_answers_with_the_client_facing_id_and_model(net, key):
    reply = sdk(net, key).chat.completions.create(model="support", messages=MESSAGES)
    assert reply.model == "support@1" and "upstream" not in reply.id
    assert reply.choices[0].message.content.startswith("answer from lf-")
    assert reply.usage.total_tokens == 8


def test_stream_over_the_network_is_rewritten_and_ends_with_done(net, key):
    chunks = list(
        sdk(net, key).chat.completions.create(
            model="support", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.model for c in chunks} == {"support@1"} and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("answer from lf-")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 8


def test_engine_errors_over_the_network_keep_the_openai_shape(net, key):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(net, key).chat.completions.create(model="support", messages=MESSAGES, temperature=3)
    assert caught.value.body["param"] == "temperature"
    net.engine.adapters.clear()  # the engine lost the adapter: loaded again, and the request retried once
    assert sdk(net, key).chat.completions.create(model="support", messages=MESSAGES).model == "support@1"


def test_engine_refusing_connections_is_503_with_retry_after(tmp_path):
    settings = on_engines(make_settings(tmp_path), "http://127.0.0.1:9")  # nothing listens on port 9
    with TestClient(create_app(settings)) as client:
        env = Env(client, FakeEngine(BASE), settings)
        key = env.tenant_with_key("acme")
        response = client.post(
            "/v1/chat/completions",
            json={"model": BASE, "messages": MESSAGES},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"]["code"] == "engine_unavailable"


async def _slow_engine(closed: asyncio.Event) -> tuple[asyncio.Server, str]:
    """An engine that sends the start of a stream and then nothing, and notes when its connection is closed."""

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if b"\r\n\r\n" in data:
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                     b"transfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n")  # fmt: skip

        def connection_lost(self, exc) -> None:
            closed.set()

    server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
def test_closing_a_stream_before_its_end_closes_the_engines_connection(kind):
    import httpx

    async def scenario() -> bool:
        closed = asyncio.Event()
        server, url = await _slow_engine(closed)
        client = httpx.AsyncClient()
        transport = AiohttpTransport(60.0) if kind == "aiohttp" else HttpxTransport(client)
        try:
            response = await transport.post(f"{url}/v1/chat/completions", b"{}")
            assert response.status == 200
            assert await anext(aiter(response.chunks())) == b"data: "
            await response.aclose()
            await asyncio.wait_for(closed.wait(), 10)  # a guard against hanging, not a measure of time
            return closed.is_set()
        finally:
            await transport.aclose()
            await client.aclose()
            server.close()

    assert asyncio.run(scenario())


def test_a_refused_connection_is_connect_failed():
    async def scenario() -> None:
        transport = AiohttpTransport(60.0)
        try:
            await transport.post("http://127.0.0.1:9/v1/completions", b"{}")
        finally:
            await transport.aclose()

    with pytest.raises(ConnectFailed):
        asyncio.run(scenario())


def test_a_connection_the_engine_closes_as_the_request_goes_out_is_retried_once_on_another():
    async def scenario() -> tuple[int, int]:
        connections = 0

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                nonlocal connections
                connections += 1
                self.transport, self.first = transport, connections == 1

            def data_received(self, data: bytes) -> None:
                if self.first:  # a kept-alive connection the engine was closing: it goes away without answering
                    self.transport.close()
                else:
                    self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", 0)
        transport = AiohttpTransport(60.0)
        try:
            response = await transport.post(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x", b"{}")
            assert await response.read() == b"{}"
            await response.aclose()
            return response.status, connections
        finally:
            await transport.aclose()
            server.close()

    assert asyncio.run(scenario()) == (200, 2)
