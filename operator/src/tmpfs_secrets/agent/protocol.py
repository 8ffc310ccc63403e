"""The wire format between the operator and its agents: one JSON object per line.

The agent opens `GET /v1/stream?secrets=a,b` with `Authorization: Bearer <token>` and reads an
endless chunked response of lines:

- `{"kind": "secret", "name": ..., "hash": "sha256:...", "mode": 288, "data": {"KEY": "<base64>"}}`:
  the whole current key set of one ExternalSecret, sent on connect and on every change;
- `{"kind": "pending", "name": ..., "reason": ..., "message": ...}`: nothing to deliver yet (or
  the last refresh failed: the agent keeps what it has);
- `{"kind": "ping"}`: sent when idle, so either side notices a dead peer.

After writing a key set the agent confirms it with `POST /v1/ack` and a body
`{"name": ..., "hash": ...}`; the operator counts which pods hold the current content. Refusals are
HTTP errors with a body `{"reason": ..., "message": ...}` that never repeats the token.

Shared by the agent and the operator so the two ends can't drift. Standard library only, and the
light part of it: the agent's resident memory is mostly the interpreter and OpenSSL, so this
avoids dataclasses, typing and base64's wrappers at run time.
"""

from __future__ import annotations

import binascii
import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (memory)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

STREAM_PATH = "/v1/stream"
ACK_PATH = "/v1/ack"
AUDIENCE = "tmpfs-secrets.io"
CONTENT_TYPE = "application/x-ndjson"
MAX_LINE = 8 * 1024 * 1024  # a Secret's data is at most 1 MiB; base64 and JSON stay far below
PING_INTERVAL = 15.0  # seconds between pings on an idle stream


class ProtocolError(ValueError):
    """A line that isn't a message of this protocol (the message never quotes the line)."""


class _Value:
    """Equality and a repr over `_fields` (values are never part of the repr)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _hidden: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._fields if f not in self._hidden))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields if f not in self._hidden)
        return f"{type(self).__name__}({shown})"


class SecretMessage(_Value):
    __slots__ = ("data", "hash", "mode", "name")
    _fields = ("name", "hash", "mode", "data")
    _hidden = ("data",)

    def __init__(self, name: str, hash: str, mode: int, data: Mapping[str, bytes]) -> None:
        self.name = name
        self.hash = hash
        self.mode = mode
        self.data = data


class PendingMessage(_Value):
    __slots__ = ("message", "name", "reason")
    _fields = ("name", "reason", "message")

    def __init__(self, name: str, reason: str, message: str) -> None:
        self.name = name
        self.reason = reason
        self.message = message


class Ping(_Value):
    __slots__ = ()


if TYPE_CHECKING:
    Message = SecretMessage | PendingMessage | Ping


def encode_secret(name: str, content_hash: str, mode: int, data: Mapping[str, bytes]) -> bytes:
    encoded = {k: binascii.b2a_base64(v, newline=False).decode("ascii") for k, v in data.items()}
    line = {"kind": "secret", "name": name, "hash": content_hash, "mode": mode, "data": encoded}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def encode_pending(name: str, reason: str, message: str) -> bytes:
    line = {"kind": "pending", "name": name, "reason": reason, "message": message}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


PING = b'{"kind":"ping"}\n'


def decode(line: bytes) -> Message:
    """Parse one line; raises ProtocolError for anything else."""
    try:
        raw: Any = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("a line of the stream is not JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("a line of the stream is not a JSON object")
    kind = raw.get("kind")
    if kind == "ping":
        return Ping()
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"a {kind!s:.20} message without a name")
    if kind == "pending":
        return PendingMessage(name, str(raw.get("reason", "")), str(raw.get("message", "")))
    if kind != "secret":
        raise ProtocolError(f"unknown message kind {kind!s:.20}")
    content_hash, mode, data = raw.get("hash"), raw.get("mode"), raw.get("data")
    if not isinstance(content_hash, str) or not isinstance(data, dict):
        raise ProtocolError(f"the secret message for {name!r} lacks its hash or data")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
        raise ProtocolError(f"the secret message for {name!r} has an invalid mode")
    values: dict[str, bytes] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ProtocolError(f"the secret message for {name!r} has a non-text value for key {key!r}")
        try:
            values[key] = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ProtocolError(f"the value of key {key!r} of {name!r} is not base64") from None
    return SecretMessage(name, content_hash, mode, values)


def encode_ack(name: str, content_hash: str) -> bytes:
    return json.dumps({"name": name, "hash": content_hash}).encode()


def decode_ack(body: bytes) -> tuple[str, str]:
    try:
        raw: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("the acknowledgement is not JSON") from None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("name"), str)
        or not isinstance(raw.get("hash"), str)
    ):
        raise ProtocolError('the acknowledgement must be {"name": ..., "hash": ...}')
    return raw["name"], raw["hash"]
