"""The agent protocol: lines round-trip, anything else is a clear error that quotes no value."""

from __future__ import annotations

import pytest

from tmpfs_secrets.agent import protocol


def test_secret_round_trip() -> None:
    line = protocol.encode_secret("shop-db", "sha256:ab", 0o440, {"K": b"\x00\xffv"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    message = protocol.decode(line)
    assert message == protocol.SecretMessage("shop-db", "sha256:ab", 0o440, {"K": b"\x00\xffv"})
    assert "\\x00" not in repr(message)  # values stay out of reprs (and so out of logs)


def test_pending_and_ping() -> None:
    assert protocol.decode(protocol.encode_pending("a", "ProviderError", "AWS unreachable")) == (
        protocol.PendingMessage("a", "ProviderError", "AWS unreachable")
    )
    assert protocol.decode(protocol.PING) == protocol.Ping()


@pytest.mark.parametrize(
    "line",
    [
        b"not json hunter2",
        b"[1]",
        b'{"kind": "secret"}',
        b'{"kind": "secret", "name": "a", "hash": "h", "mode": 999, "data": {}}',
        b'{"kind": "secret", "name": "a", "hash": "h", "mode": true, "data": {}}',
        b'{"kind": "secret", "name": "a", "hash": "h", "mode": 256, "data": {"K": "hunter2!"}}',
        b'{"kind": "secret", "name": "a", "hash": "h", "mode": 256, "data": {"K": 1}}',
        b'{"kind": "other", "name": "a"}',
        b"\xff\xfe",
    ],
)
def test_garbage_is_refused_without_quoting_it(line: bytes) -> None:
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode(line)
    assert "hunter2" not in str(e.value)


def test_ack() -> None:
    assert protocol.decode_ack(protocol.encode_ack("a", "sha256:1")) == ("a", "sha256:1")
    for body in (b"x", b"[]", b'{"name": 1, "hash": "h"}'):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_ack(body)
