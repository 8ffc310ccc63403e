"""The agent's loop: connect, stream key sets into folders, acknowledge, reconnect with backoff.

One thread, one HTTPS connection for the stream and one for acknowledgements. When the operator
is unreachable the folders keep the last key set written; reconnection waits grow exponentially
with full jitter, so a thousand agents that lost the same operator don't come back in one burst.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import ssl
import threading
import urllib.parse
from collections.abc import Mapping

from tmpfs_secrets.agent import protocol
from tmpfs_secrets.agent.token import TokenFile
from tmpfs_secrets.agent.writer import AtomicWriter, KeyRefused

log = logging.getLogger("tmpfs_secrets.agent")


class Refused(Exception):
    """The operator refused the stream (HTTP 4xx); its reason and message, never the token."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status


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
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"the operator URL must be https://HOST[:PORT], got {url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 443
        self.context = context
        self.token = token
        self.targets = dict(targets)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.read_timeout = read_timeout
        self.hashes: dict[str, str] = {}  # name -> content hash last written
        self.stop = threading.Event()
        self._stream: http.client.HTTPSConnection | None = None
        self._acks: http.client.HTTPSConnection | None = None

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
        while not self.stop.is_set():
            try:
                received = self.stream_once()
                attempt = 0 if received else attempt + 1
                log.info("the operator closed the stream; reconnecting")
            except Refused as e:
                attempt += 1
                log.warning("the operator refused the stream: %s", e)
            except (OSError, http.client.HTTPException, protocol.ProtocolError) as e:
                attempt += 1
                if not self.stop.is_set():
                    log.warning("stream to %s:%d failed: %s: %s", self.host, self.port, type(e).__name__, e)
            if self.stop.is_set():
                break
            delay = (
                random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt)) if attempt else 0.0
            )
            if delay:
                log.info("reconnecting in %.1f s (attempt %d); the files stay as they are", delay, attempt)
            self.stop.wait(delay)

    def close(self) -> None:
        self.stop.set()
        for conn in (self._stream, self._acks):
            if conn is not None and conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(2)

    def stream_once(self) -> bool:
        """One connection: returns whether any message arrived (so backoff starts over)."""
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.read_timeout
        )
        self._stream = conn
        try:
            query = urllib.parse.urlencode({"secrets": ",".join(sorted(self.targets))})
            headers = {"Authorization": f"Bearer {self.token.read()}", "Accept": protocol.CONTENT_TYPE}
            conn.request("GET", f"{protocol.STREAM_PATH}?{query}", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                raise _refused(response)
            received = False
            while not self.stop.is_set():
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
            log.warning("ignoring %s: this pod did not ask for it", message.name)
            return
        if isinstance(message, protocol.PendingMessage):
            log.info(
                "%s has nothing new to deliver (%s: %s); files kept",
                message.name,
                message.reason,
                message.message,
            )
            return
        if self.hashes.get(message.name) != message.hash or not writer.written():
            try:
                writer.write(message.data, message.mode)
            except KeyRefused as e:
                log.error("not writing %s: %s", message.name, e)
                return
            self.hashes[message.name] = message.hash
            log.info("wrote %d key(s) of %s (content %s)", len(message.data), message.name, message.hash[:19])
        self.ack(message.name, message.hash)

    def ack(self, name: str, content_hash: str) -> None:
        body = protocol.encode_ack(name, content_hash)
        for _ in range(2):  # a kept-alive connection the operator closed meanwhile: once more, fresh
            if self._acks is None:
                self._acks = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=10
                )
            try:
                headers = {"Authorization": f"Bearer {self.token.read()}", "Content-Type": "application/json"}
                self._acks.request("POST", protocol.ACK_PATH, body=body, headers=headers)
                response = self._acks.getresponse()
                response.read()
                if response.status >= 300:
                    log.warning("the operator refused the acknowledgement of %s: %d", name, response.status)
                return
            except (OSError, http.client.HTTPException) as e:
                self._acks.close()
                self._acks = None
                error = e
        log.warning("could not acknowledge %s: %s", name, type(error).__name__)


def _refused(response: http.client.HTTPResponse) -> Refused:
    import json

    body = response.read(4096)
    reason, message = response.reason, ""
    try:
        raw = json.loads(body)
        if isinstance(raw, dict):
            reason = str(raw.get("reason", reason))[:100]
            message = str(raw.get("message", ""))[:300]
    except ValueError:
        pass
    return Refused(response.status, reason, message)
