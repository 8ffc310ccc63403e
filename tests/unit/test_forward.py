"""The host port of `make cluster` relays small request/response exchanges without Nagle delays."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from tests.cluster import forward


def test_relay_turns_nagle_off_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream_server = socket.create_server(("127.0.0.1", 0))
    relayed: list[socket.socket] = []
    real_connect = socket.create_connection

    def connect(*args: Any, **kwargs: Any) -> socket.socket:
        sock = real_connect(*args, **kwargs)
        relayed.append(sock)
        return sock

    monkeypatch.setattr(forward.socket, "create_connection", connect)
    checked: dict[str, int] = {}

    def answer() -> None:
        conn, _ = upstream_server.accept()
        with conn:
            request = conn.recv(100)
            checked["upstream"] = relayed[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            conn.sendall(b"re:" + request)

    threading.Thread(target=answer, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    real_accept = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        pair = real_accept(self)
        accepted.append(pair[0])
        return pair

    monkeypatch.setattr(socket.socket, "accept", accept)
    forward.serve(listener.detach(), upstream_server.getsockname())
    with real_connect(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"ping")
        assert client.recv(100) == b"re:ping"
        # checked while the relay still holds both connections open
        relay_side = [s for s in accepted if s.fileno() >= 0 and s.getsockname()[1] == port]
        assert len(relay_side) == 1
        assert relay_side[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert checked["upstream"] != 0
    upstream_server.close()
