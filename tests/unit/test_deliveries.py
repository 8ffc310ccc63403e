"""The delivery queue: arrival order, one report for an object named twice before its turn, a
failing report not stopping the others, and `idle` meaning nothing pending or running."""

from __future__ import annotations

import asyncio

import pytest

from tmpfs_secrets.engine.deliveries import Deliveries
from tmpfs_secrets.ports import ObjectRef


def ref(name: str) -> ObjectRef:
    return ObjectRef("shop", name)


async def test_reports_in_arrival_order_once_per_object_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[str] = []
    gate = asyncio.Event()

    async def report(r: ObjectRef) -> None:
        await gate.wait()
        reported.append(r.name)
        if r.name == "bad":
            raise RuntimeError("boom")

    deliveries = Deliveries(report, workers=1)
    for name in ("a", "bad", "b", "a", "c", "b"):
        deliveries.submit(ref(name))
    deliveries.submit(ref("gone"))
    deliveries.discard(ref("gone"))
    assert deliveries.busy
    gate.set()
    await asyncio.wait_for(deliveries.idle(), 5)
    # Every object was still waiting when named again: reported once each, in arrival order.
    assert reported == ["a", "bad", "b", "c"]
    assert not deliveries.busy
    deliveries.submit(ref("a"))  # named after its report: reported again
    await asyncio.wait_for(deliveries.idle(), 5)
    assert reported == ["a", "bad", "b", "c", "a"]
    assert "reporting shop/bad failed unexpectedly" in caplog.text
    await deliveries.stop()


async def test_idle_waits_for_running_reports() -> None:
    done: list[str] = []

    async def report(r: ObjectRef) -> None:
        await asyncio.sleep(0.05)
        done.append(r.name)

    deliveries = Deliveries(report, workers=4)
    for i in range(10):
        deliveries.submit(ref(f"o{i}"))
    await asyncio.wait_for(deliveries.idle(), 5)
    assert sorted(done) == sorted(f"o{i}" for i in range(10))
    await deliveries.stop()
