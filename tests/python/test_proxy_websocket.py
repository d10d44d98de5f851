"""`overlayd proxy` passes Upgrade through (DEVELOPERS.md issue 6): a real WebSocket server (the
`websockets` package, RFC 6455 on both ends) behind the proxy, a real WebSocket client in front.

The proxy forwards the Upgrade request on a connection of its own, relays the upstream's
101 Switching Protocols, and from then on copies bytes both ways; an upstream that refuses the
upgrade answers like any other response, and the proxy keeps serving plain HTTP beside tunnels.
"""
from __future__ import annotations

import asyncio
import os
import threading
import urllib.request

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.datastructures import Headers
from websockets.sync.client import connect

from overlayd_proc import running_proxy

CONFIG = """\
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: app.example
  models: [{name: mock, weight: 100}]
  strategy: Canary
"""


class EchoUpstream:
    """A WebSocket echo server on 127.0.0.1:0 in its own thread; /refuse answers 403 instead of
    upgrading; plain HTTP GET /plain answers 200 (the websockets server's process_request)."""

    def __init__(self):
        self.port = 0
        self.seen_headers: list[Headers] = []
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _echo(self, ws):
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    def _process(self, connection, request):
        self.seen_headers.append(request.headers)
        if request.path == "/refuse":
            return connection.respond(403, "no upgrade here\n")
        return None

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._echo, "127.0.0.1", 0, process_request=self._process, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def _run(self):
        asyncio.run(self._main())

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    config = tmp_path_factory.mktemp("ws") / "overlay.yaml"
    config.write_text(CONFIG)
    with EchoUpstream() as upstream, running_proxy(f"http://127.0.0.1:{upstream.port}", config) as port:
        yield port, upstream


def test_websocket_messages_echo_through_the_proxy(proxied):
    port, upstream = proxied
    with connect(f"ws://127.0.0.1:{port}/echo", max_size=None,
                 open_timeout=10) as ws:
        ws.send("hello through overlayd")
        assert ws.recv(timeout=10) == "hello through overlayd"
        blob = os.urandom(3 * 1024 * 1024)  # larger than any socket buffer: back-pressure both ways
        ws.send(blob)
        assert ws.recv(timeout=30) == blob
        for i in range(50):
            ws.send(f"message {i}")
        assert [ws.recv(timeout=10) for _ in range(50)] == [f"message {i}" for i in range(50)]
        ws.close(code=1000, reason="done")
    assert ws.close_code == 1000
    # The upstream saw the upgrade with the client's key, and the proxy's forwarding headers.
    headers = upstream.seen_headers[-1]
    assert headers["Upgrade"].lower() == "websocket"
    assert "upgrade" in headers["Connection"].lower()
    assert headers["Sec-WebSocket-Key"]
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["Host"] == f"127.0.0.1:{port}"  # the client's Host, kept (not the upstream's address)


def test_the_upstream_closing_the_websocket_reaches_the_client(proxied):
    port, _ = proxied
    with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
        # The close handshake crosses the tunnel both ways: the upstream answers with the code
        # and reason it received, and the TCP connections then end cleanly.
        ws.close(code=4001, reason="client says bye")
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "client says bye")


def test_a_refused_upgrade_is_an_ordinary_response(proxied):
    port, _ = proxied
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/refuse", open_timeout=10)
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"no upgrade here\n"


def test_plain_requests_are_served_while_tunnels_are_open(proxied):
    port, _ = proxied
    sockets = [connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10)
               for _ in range(8)]
    try:
        # overlayd's own endpoint on the same listener (answered by the proxy, not the upstream).
        request = urllib.request.Request(f"http://127.0.0.1:{port}/__overlay/healthz", headers={"Host": "app.example"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
        for i, ws in enumerate(sockets):
            ws.send(f"tunnel {i}")
        assert [ws.recv(timeout=10) for ws in sockets] == [f"tunnel {i}" for i in range(8)]
    finally:
        for ws in sockets:
            ws.close()
