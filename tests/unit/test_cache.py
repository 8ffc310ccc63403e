import asyncio
import math
from collections.abc import Mapping

from tmpfs_secrets.cache import ValueCache


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_single_flight_joins_loads_in_progress() -> None:
    cache: ValueCache[str, str] = ValueCache(clock=FakeClock())
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def loader(keys: list[str]) -> Mapping[str, object]:
        calls.append(keys)
        await gate.wait()
        return {k: f"value-of-{k}" for k in keys}

    first = asyncio.create_task(
        cache.load_many(["a", "b"], loader, lambda v: isinstance(v, str), lambda k: 60)
    )
    await asyncio.sleep(0)
    second = asyncio.create_task(
        cache.load_many(["b", "c"], loader, lambda v: isinstance(v, str), lambda k: 60)
    )
    await asyncio.sleep(0)
    gate.set()
    assert await first == {"a": "value-of-a", "b": "value-of-b"}
    assert await second == {"b": "value-of-b", "c": "value-of-c"}
    assert calls == [["a", "b"], ["c"]]  # "b" was loaded once


async def test_errors_are_returned_but_not_cached() -> None:
    cache: ValueCache[str, str] = ValueCache(clock=FakeClock())

    async def loader(keys: list[str]) -> Mapping[str, object]:
        return {"ok": "v", "bad": RuntimeError("nope")}

    out = await cache.load_many(["ok", "bad"], loader, lambda v: isinstance(v, str), lambda k: 60)
    assert isinstance(out["bad"], RuntimeError)
    assert cache.get("ok") is not None and cache.get("bad") is None


async def test_loader_exception_reaches_joined_waiters() -> None:
    cache: ValueCache[str, str] = ValueCache(clock=FakeClock())
    gate = asyncio.Event()

    async def loader(keys: list[str]) -> Mapping[str, object]:
        await gate.wait()
        raise ConnectionError("down")

    first = asyncio.create_task(cache.load_many(["a"], loader, lambda v: True, lambda k: 60))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.load_many(["a"], loader, lambda v: True, lambda k: 60))
    await asyncio.sleep(0)
    gate.set()
    for task in (first, second):
        try:
            await task
        except ConnectionError:
            continue
        raise AssertionError("expected the loader's error")


def test_entries_expire_per_their_own_ttl() -> None:
    clock = FakeClock()
    cache: ValueCache[str, str] = ValueCache(clock=clock)
    cache.put("short", "x", 10)
    cache.put("long", "y", 100)
    cache.put("forever", "z", 0)
    clock.t += 50
    assert cache.get("short") is None
    assert cache.get("long") is not None
    clock.t += 1e9
    assert cache.get("long") is None
    entry = cache.get("forever")
    assert entry is not None and entry.expires_at == math.inf
