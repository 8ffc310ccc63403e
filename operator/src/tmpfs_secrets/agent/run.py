"""The agent's loop: connect, stream key sets into folders, acknowledge, reconnect with backoff.

One thread, one HTTPS connection for the stream and one for acknowledgements. When the operator
is unreachable the folders keep the last key set written; reconnection waits grow exponentially
with full jitter, so a thousand agents that lost the same operator don't come back in one burst.
"""

from __future__ import annotations

import os
import time

from tmpfs_secrets.agent import protocol
from tmpfs_secrets.agent.http import Connection, Response
from tmpfs_secrets.agent.log import say
from tmpfs_secrets.agent.writer import KeyRefused

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (memory)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

    from tmpfs_secrets.agent.token import TokenFile
    from tmpfs_secrets.agent.writer import AtomicWriter


class Refused(Exception):
    """The operator refused the stream (HTTP 4xx/5xx); its reason and message, never the token."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status


def _jitter(ceiling: float) -> float:
    """A uniform draw in [0, ceiling) without `random` (and its hashlib and math imports)."""
    return ceiling * int.from_bytes(os.urandom(4), "big") / 2**32


def split_url(url: str) -> tuple[str, int]:
    rest = url[len("https://") :].rstrip("/") if url.startswith("https://") else ""
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "443"
    if not host or "/" in host or not port.isdigit():
        raise ValueError(f"the operator URL must be https://HOST[:PORT], got {url!r}")
    return host, int(port)


class Agent:
    def __init__(
        self,
        url: str,
        context: ssl.SSLContext,
        token: TokenFile,
        targets: Mapping[str, AtomicWriter],
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        read_timeout: float = 3 * protocol.PING_INTERVAL,
    ) -> None:
        self.host, self.port = split_url(url)
        self.context = context
        self.token = token
        self.targets = dict(targets)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.read_timeout = read_timeout
        self.hashes: dict[str, str] = {}  # name -> content hash last written
        self.stopped = False
        self._stream: Connection | None = None
        self._acks: Connection | None = None

    def ready(self) -> bool:
        return all(w.written() for w in self.targets.values())

    def run(self) -> None:
        """Stream until `close()`; never raises for network or operator failures."""
        try:
            self._loop()
        finally:
            if self._acks is not None:
                self._acks.close()
                self._acks = None

    def _loop(self) -> None:
        attempt = 0
        while not self.stopped:
            try:
                received = self.stream_once()
                attempt = 0 if received else attempt + 1
                if not self.stopped:
                    say("INFO", "the operator closed the stream; reconnecting")
            except Refused as e:
                attempt += 1
                say("WARNING", f"the operator refused the stream: {e}")
            except (OSError, protocol.ProtocolError) as e:
                attempt += 1
                if not self.stopped:
                    say("WARNING", f"stream to {self.host}:{self.port} failed: {type(e).__name__}: {e}")
            if self.stopped:
                break
            delay = _jitter(min(self.backoff_cap, self.backoff_base * 2**attempt)) if attempt else 0.0
            if delay:
                say("INFO", f"reconnecting in {delay:.1f} s (attempt {attempt}); the files stay as they are")
            self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def close(self) -> None:
        self.stopped = True
        for conn in (self._stream, self._acks):
            if conn is not None:
                conn.shutdown()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.read()}"}

    def stream_once(self) -> bool:
        """One connection: returns whether any message arrived (so backoff starts over)."""
        conn = Connection(self.host, self.port, self.context, self.read_timeout)
        self._stream = conn
        try:
            path = f"{protocol.STREAM_PATH}?secrets={','.join(sorted(self.targets))}"
            response = conn.request("GET", path, {**self._headers(), "Accept": protocol.CONTENT_TYPE})
            if response.status != 200:
                raise _refused(response)
            received = False
            while not self.stopped:
                line = response.readline(protocol.MAX_LINE)
                if not line:
                    return received
                if not line.endswith(b"\n"):
                    raise protocol.ProtocolError("a line of the stream is longer than the limit")
                received = True
                self.handle(protocol.decode(line))
            return received
        finally:
            conn.close()
            self._stream = None

    def handle(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Ping):
            return
        writer = self.targets.get(message.name)
        if writer is None:
            say("WARNING", f"ignoring {message.name}: this pod did not ask for it")
            return
        if isinstance(message, protocol.PendingMessage):
            say("INFO", f"{message.name} has nothing new ({message.reason}: {message.message}); files kept")
            return
        if self.hashes.get(message.name) != message.hash or not writer.written():
            try:
                writer.write(message.data, message.mode)
            except (KeyRefused, OSError) as e:
                say("ERROR", f"not writing {message.name}: {e}")
                return
            self.hashes[message.name] = message.hash
            say("INFO", f"wrote {len(message.data)} key(s) of {message.name} (content {message.hash[:19]})")
        self.ack(message.name, message.hash)

    def ack(self, name: str, content_hash: str) -> None:
        body = protocol.encode_ack(name, content_hash)
        error: Exception | None = None
        for _ in range(2):  # a kept-alive connection the operator closed meanwhile: once more, fresh
            if self._acks is None:
                self._acks = Connection(self.host, self.port, self.context, 10)
            try:
                headers = {**self._headers(), "Content-Type": "application/json"}
                response = self._acks.request("POST", protocol.ACK_PATH, headers, body)
                response.read(4096)
                if response.headers.get("connection", "").lower() == "close":
                    self._acks.close()
                    self._acks = None
                if response.status >= 300:
                    say("WARNING", f"the operator refused the acknowledgement of {name}: {response.status}")
                return
            except OSError as e:
                if self._acks is not None:
                    self._acks.close()
                self._acks = None
                error = e
        say("WARNING", f"could not acknowledge {name}: {type(error).__name__}")


def _refused(response: Response) -> Refused:
    import json

    reason, message = response.reason, ""
    try:
        raw = json.loads(response.read(4096))
        if isinstance(raw, dict):
            reason = str(raw.get("reason", reason))[:100]
            message = str(raw.get("message", ""))[:300]
    except (ValueError, OSError):
        pass
    return Refused(response.status, reason, message)
