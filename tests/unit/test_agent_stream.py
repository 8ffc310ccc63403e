"""The agent against a local HTTPS server speaking the protocol: TLS verified against the CA,
the token re-read on each connection, files written and acknowledged, files kept and the stream
resumed after the server goes away, refusals backed off."""

from __future__ import annotations

import http.server
import json
import queue
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.certs import CertificateAuthority
from tmpfs_secrets.agent import protocol
from tmpfs_secrets.agent.run import Agent
from tmpfs_secrets.agent.token import TokenFile
from tmpfs_secrets.agent.writer import AtomicWriter


@dataclass
class Script:
    """What the server does: a status per stream request, lines to send, what it received."""

    statuses: list[int] = field(default_factory=list)
    lines: queue.Queue[bytes | None] = field(default_factory=queue.Queue)  # None ends the stream
    streams: list[tuple[str, str]] = field(default_factory=list)  # (path, authorization)
    acks: list[tuple[str, str, str]] = field(default_factory=list)  # (name, hash, authorization)


def _handler(script: Script) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            script.streams.append((self.path, self.headers.get("Authorization", "")))
            status = script.statuses.pop(0) if script.statuses else 200
            if status != 200:
                body = json.dumps({"reason": "Forbidden", "message": "not named"}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", protocol.CONTENT_TYPE)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while (line := script.lines.get()) is not None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            name, content_hash = protocol.decode_ack(body)
            script.acks.append((name, content_hash, self.headers.get("Authorization", "")))
            self.send_response(204)
            self.end_headers()

    return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Script, int, ssl.SSLContext]]:
    ca = CertificateAuthority()
    crt, key = ca.issue("agent-test", dns_names=["localhost"], server=True).write(tmp_path / "tls", "srv")
    script = Script()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield script, httpd.server_address[1], ssl.create_default_context(cadata=ca.cert.decode())
    finally:
        script.lines.put(None)
        httpd.shutdown()
        httpd.server_close()


def _wait(predicate: object, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():  # type: ignore[operator]
            return
        done.wait(0.02)
    raise AssertionError("condition not reached")


def _agent(tmp_path: Path, port: int, context: ssl.SSLContext) -> tuple[Agent, Path, Path]:
    token = tmp_path / "token"
    token.write_text("token-one\n")
    folder = tmp_path / "shop-db"
    agent = Agent(
        f"https://localhost:{port}",
        context,
        TokenFile(str(token)),
        {"shop-db": AtomicWriter(folder)},
        backoff_base=0.05,
        backoff_cap=0.2,
        read_timeout=5,
    )
    return agent, folder, token


def test_stream_writes_acknowledges_and_follows_rotations(
    server: tuple[Script, int, ssl.SSLContext], tmp_path: Path
) -> None:
    script, port, context = server
    agent, folder, token = _agent(tmp_path, port, context)
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        script.lines.put(protocol.PING)
        script.lines.put(protocol.encode_secret("shop-db", "sha256:1", 0o400, {"PASSWORD": b"one"}))
        _wait(lambda: len(script.acks) == 1)
        assert (folder / "PASSWORD").read_bytes() == b"one"
        assert agent.ready()
        assert script.streams == [("/v1/stream?secrets=shop-db", "Bearer token-one")]
        assert script.acks == [("shop-db", "sha256:1", "Bearer token-one")]
        token.write_text("token-two\n")  # kubelet refreshed the projected token
        script.lines.put(protocol.encode_pending("shop-db", "ProviderError", "AWS unreachable"))
        script.lines.put(protocol.encode_secret("other", "sha256:x", 0o400, {"X": b"x"}))
        script.lines.put(protocol.encode_secret("shop-db", "sha256:2", 0o400, {"PASSWORD": b"two"}))
        _wait(lambda: len(script.acks) == 2)
        assert (folder / "PASSWORD").read_bytes() == b"two"
        assert script.acks[1] == ("shop-db", "sha256:2", "Bearer token-two")
        assert not (tmp_path / "other").exists()
        # The server ends the stream (a token expiry, an operator restart): the agent comes back
        # with the new token, the files untouched meanwhile.
        script.lines.put(None)
        _wait(lambda: len(script.streams) == 2)
        assert script.streams[1][1] == "Bearer token-two"
        assert (folder / "PASSWORD").read_bytes() == b"two"
        script.lines.put(protocol.encode_secret("shop-db", "sha256:2", 0o400, {"PASSWORD": b"two"}))
        _wait(lambda: len(script.acks) == 3)  # the same content is acknowledged, not rewritten
    finally:
        agent.close()
        script.lines.put(None)
        thread.join(10)
    assert not thread.is_alive()


def test_refusals_and_garbage_back_off_and_keep_files(
    server: tuple[Script, int, ssl.SSLContext], tmp_path: Path
) -> None:
    script, port, context = server
    agent, folder, _ = _agent(tmp_path, port, context)
    AtomicWriter(folder).write({"PASSWORD": b"kept"})
    script.statuses = [403, 401]
    script.lines.put(b"garbage\n")  # the third connection gets garbage, the fourth a key set
    script.lines.put(None)
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        _wait(lambda: len(script.streams) >= 3)
        assert (folder / "PASSWORD").read_bytes() == b"kept"
        script.lines.put(protocol.encode_secret("shop-db", "sha256:9", 0o400, {"PASSWORD": b"new"}))
        _wait(lambda: len(script.acks) == 1)
        assert (folder / "PASSWORD").read_bytes() == b"new"
        assert len(script.streams) == 4
    finally:
        agent.close()
        script.lines.put(None)
        thread.join(10)


def test_untrusted_certificate_is_refused(server: tuple[Script, int, ssl.SSLContext], tmp_path: Path) -> None:
    script, port, _ = server
    other = ssl.create_default_context(cadata=CertificateAuthority().cert.decode())
    agent, folder, _ = _agent(tmp_path, port, other)
    with pytest.raises(ssl.SSLCertVerificationError):
        agent.stream_once()
    assert script.streams == [] and not folder.exists()
