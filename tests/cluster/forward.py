"""Relay TCP connections from a host loopback port to a server inside the bubble.

The bubble wrapper binds the listening socket on the host before entering the bubble (a socket
keeps the network namespace it was made in) and hands it over by file descriptor; connections
accepted on it are relayed to an address inside the bubble, typically the API server on
127.0.0.1. So a person's kubectl on the host reaches the cluster while nothing inside has a route
out.
"""

from __future__ import annotations

import contextlib
import socket
import threading


def _no_delay(sock: socket.socket) -> None:
    """Nagle's algorithm holds a small write until the previous one is acknowledged, and the peer
    delays that acknowledgement: about 40 ms per request/response exchange through a relay that
    writes each direction separately. Requests and answers are sent as soon as they arrive."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _relay(client: socket.socket, target: tuple[str, int]) -> None:
    with client:
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            return
        with upstream:
            upstream.settimeout(None)
            _no_delay(client)
            _no_delay(upstream)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def serve(listener_fd: int, target: tuple[str, int]) -> threading.Thread:
    """Accept on the inherited listening socket `listener_fd` and relay each connection to `target`."""
    listener = socket.socket(fileno=listener_fd)

    def accept_loop() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_relay, args=(client, target), daemon=True).start()

    thread = threading.Thread(target=accept_loop, name="forwarder", daemon=True)
    thread.start()
    return thread
