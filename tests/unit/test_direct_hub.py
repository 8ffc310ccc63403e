"""The hub: one encoding per change, latest-wins per subscriber, counts by pod, not connection."""

from __future__ import annotations

from tmpfs_secrets.agent import protocol
from tmpfs_secrets.direct.hub import Counts, Hub
from tmpfs_secrets.ports import ObjectRef

DB = ObjectRef("shop", "shop-db")


async def test_fan_out_conflates_for_slow_subscribers_and_counts_pods() -> None:
    changed: list[ObjectRef] = []
    hub = Hub(on_counts=changed.append)
    early = hub.subscribe("pod-a", [DB])
    first = early.take()
    assert [protocol.decode(line) for line in first] == [
        protocol.PendingMessage("shop-db", "NotFetched", "no key set has been fetched yet")
    ]
    for i in range(50):  # a subscriber that doesn't drain holds only the newest key set
        hub.publish(DB, {"K": f"v{i}".encode()}, f"sha256:{i}", 0o440)
    assert hub.published == 50
    lines = early.take()
    assert len(lines) == 1 and protocol.decode(lines[0]).hash == "sha256:49"  # type: ignore[union-attr]
    hub.publish(DB, {"K": b"v49"}, "sha256:49", 0o440)  # same content: nothing new
    assert hub.published == 50 and early.take() == []

    again = hub.subscribe("pod-a", [DB])  # the same pod reconnected: one pod, two connections
    late = hub.subscribe("pod-b", [DB])
    assert protocol.decode(late.take()[0]).hash == "sha256:49"  # type: ignore[union-attr]
    assert hub.counts(DB) == Counts(0, 2)
    assert hub.ack("pod-a", DB, "sha256:49")
    assert hub.counts(DB) == Counts(1, 1)
    assert not hub.ack("pod-c", DB, "sha256:49")  # not streaming: not counted
    hub.publish(DB, {"K": b"new"}, "sha256:new", 0o440)
    assert hub.counts(DB) == Counts(0, 2)
    hub.ack("pod-b", DB, "sha256:new")
    hub.unsubscribe(early)
    hub.unsubscribe(again)
    assert hub.counts(DB) == Counts(1, 0)
    assert changed and set(changed) == {DB}
    hub.forget(DB)
    assert hub.content_hash(DB) is None
