"""A small HTTP/1.1 client over TLS: one request at a time per connection, chunked or sized bodies.

`http.client` would do, but it pulls in the `email` package; the agent's memory budget is mostly
the interpreter and OpenSSL, so the little it needs is written out here. Errors are `OSError`s
(`ConnectionError` for a peer that breaks the protocol) and never quote what was received.
"""

from __future__ import annotations

import socket
import ssl

_MAX_HEAD = 16 * 1024


class Response:
    def __init__(self, rfile: object, status: int, reason: str, headers: dict[str, str]) -> None:
        self._rfile = rfile
        self.status = status
        self.reason = reason
        self.headers = headers
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._left = int(length) if length is not None and length.isdigit() else None
        self._buffer = b""
        self._eof = status in (204, 304) or 100 <= status < 200  # never a body

    def _raw(self, size: int) -> bytes:
        data: bytes = self._rfile.read(size)  # type: ignore[attr-defined]
        if len(data) < size:
            raise ConnectionError("the connection closed in the middle of a response")
        return data

    def _line(self) -> bytes:
        line: bytes = self._rfile.readline(_MAX_HEAD)  # type: ignore[attr-defined]
        if not line.endswith(b"\n"):
            raise ConnectionError("the connection closed or sent an overlong line")
        return line

    def _fill(self) -> None:
        """Decode one more piece of the body into the buffer; sets EOF at its end."""
        if self.chunked:
            try:
                size = int(self._line().split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionError("a malformed chunk size") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):
                    pass
                self._eof = True
                return
            self._buffer += self._raw(size)
            self._raw(2)
        elif self._left is not None:
            if self._left == 0:
                self._eof = True
                return
            piece = self._raw(min(self._left, 65536))
            self._left -= len(piece)
            self._buffer += piece
        else:  # no length: the body runs to the end of the connection
            piece = self._rfile.read1(65536)  # type: ignore[attr-defined]
            if not piece:
                self._eof = True
            self._buffer += piece

    def readline(self, limit: int) -> bytes:
        """The next line of the body with its newline; shorter only at the end or past `limit`."""
        while b"\n" not in self._buffer and len(self._buffer) < limit and not self._eof:
            self._fill()
        end = self._buffer.find(b"\n")
        cut = min(limit, end + 1) if end >= 0 else min(limit, len(self._buffer))
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line

    def read(self, limit: int = 1 << 20) -> bytes:
        while not self._eof and len(self._buffer) < limit:
            self._fill()
        body, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return body


class Connection:
    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout
        self.sock: ssl.SSLSocket | None = None
        self._rfile: object = None

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Response:
        if self.sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
            self._rfile = self.sock.makefile("rb")
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        status_line = self._rfile.readline(_MAX_HEAD)  # type: ignore[attr-defined]
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError("the server did not answer with HTTP/1.1")
        found: dict[str, str] = {}
        while True:
            line = self._rfile.readline(_MAX_HEAD)  # type: ignore[attr-defined]
            if not line.endswith(b"\n"):
                raise ConnectionError("the connection closed in the middle of the headers")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        reason = parts[2].strip() if len(parts) > 2 else ""
        return Response(self._rfile, int(parts[1]), reason, found)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if self._rfile is not None:
            self._rfile.close()  # type: ignore[attr-defined]
            self._rfile = None
        if sock is not None:
            sock.close()

    def shutdown(self) -> None:
        """Wake a blocked read from another thread (the agent's close)."""
        sock = self.sock
        if sock is not None:
            try:  # noqa: SIM105 (contextlib is one more import in every pod)
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
