"""The work queue under watch events: one object's events in order, different objects side by side,
and the reader held back (not the bodies piled up) while `limit` events wait."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tmpfs_secrets.kube.work_queue import WorkQueue

SECRET = "s3cr3t-" + "value"


def test_events_of_one_object_are_handled_in_order_and_never_at_once() -> None:
    async def scenario() -> tuple[list[tuple[str, int]], int]:
        handled: list[tuple[str, int]] = []
        running: set[str] = set()
        overlap = 0

        async def handle(item: tuple[str, int]) -> None:
            nonlocal overlap
            key, _ = item
            overlap += key in running
            running.add(key)
            await asyncio.sleep(0.001 * (item[1] % 3))
            handled.append(item)
            running.discard(key)

        queue: WorkQueue[tuple[str, int]] = WorkQueue(handle, workers=4, limit=100, name="t")
        for i in range(30):
            key = "abc"[i % 3]
            await queue.put(key, (key, i))
        await queue.drained()
        await queue.stop()
        return handled, overlap

    handled, overlap = asyncio.run(scenario())
    assert overlap == 0
    assert len(handled) == 30
    for key in "abc":
        mine = [i for k, i in handled if k == key]
        assert mine == sorted(mine) and len(mine) == 10


def test_different_objects_are_handled_side_by_side() -> None:
    async def scenario() -> int:
        started = 0
        release = asyncio.Event()

        async def handle(item: int) -> None:
            nonlocal started
            started += 1
            await release.wait()

        queue: WorkQueue[int] = WorkQueue(handle, workers=3, limit=10, name="t")
        for i in range(5):
            await queue.put(i, i)
        await asyncio.sleep(0.05)
        seen = started
        release.set()
        await queue.drained()
        await queue.stop()
        return seen

    assert asyncio.run(scenario()) == 3  # as many as workers, no more


def test_put_waits_while_limit_events_are_pending() -> None:
    async def scenario() -> tuple[int, int, int]:
        release = asyncio.Event()

        async def handle(item: int) -> None:
            await release.wait()

        queue: WorkQueue[int] = WorkQueue(handle, workers=2, limit=5, name="t")
        put = 0

        async def reader() -> None:
            nonlocal put
            for i in range(20):
                await queue.put(i, i)
                put += 1

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)
        held, pending = put, queue.pending
        release.set()
        await task
        await queue.drained()
        await queue.stop()
        return held, pending, put

    held, pending, put = asyncio.run(scenario())
    assert held == 5 and pending == 5  # the reader waits with 5 events pending, 2 of them in hand
    assert put == 20


def test_a_failing_event_is_logged_without_its_message_and_the_next_one_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[int]:
        handled: list[int] = []

        async def handle(item: int) -> None:
            if item == 1:
                raise ValueError(SECRET)  # by name: the traceback quotes this line
            handled.append(item)

        queue: WorkQueue[int] = WorkQueue(handle, workers=1, limit=10, name="t")
        for i in range(3):
            await queue.put("same", i)
        await queue.drained()
        await queue.stop()
        return handled

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == [0, 2]
    assert "failed unexpectedly" in caplog.text and "ValueError" in caplog.text
    assert SECRET not in caplog.text
