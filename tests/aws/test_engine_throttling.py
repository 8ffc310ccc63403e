"""Throttling over real HTTP (moto behind the fault layer): the whole group slows down together,
below its healthy call rate, keeps its values, and comes back at the healthy pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.aws.conftest import Harness, KubeReads, RecordingSink, data, external_secret, store
from tests.cluster.aws import Fault, MotoServer
from tmpfs_secrets.engine import Engine, EngineSettings
from tmpfs_secrets.ports import ObjectRef

INTERVAL = 4.0
KEYS = 40  # two BatchGetSecretValue calls of 20 per interval while healthy


@pytest.fixture
async def slow_harness(aws: MotoServer) -> AsyncIterator[Harness]:
    rec, kube = RecordingSink(), KubeReads()
    settings = EngineSettings(
        store_grace=0.0,
        backoff_base=0.5,
        backoff_cap=30.0,
        allow_operator_identity=True,
        min_refresh_interval=0.1,
    )
    engine = Engine(kube, rec, settings)
    await engine.start()
    try:
        yield Harness(engine, rec, kube, aws)
    finally:
        await engine.stop()


def most_in_window(times: list[float], window: float) -> int:
    peak, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


async def test_throttling_slows_the_group_below_its_healthy_rate(slow_harness: Harness, sm: Any) -> None:
    h = slow_harness
    keys = [f"app/throttle-{i}" for i in range(KEYS)]
    for i, key in enumerate(keys):
        sm.create_secret(Name=key, SecretString=f"value-{i}")
    refs = [ObjectRef("shop", f"es-{i}") for i in range(KEYS)]
    await h.engine.upsert_store(store())
    for r, key in zip(refs, keys, strict=True):
        spec = {"refreshInterval": f"{INTERVAL:g}s", "data": data(("V", key))}
        await h.engine.upsert_external_secret(external_secret(r.name, spec))
    await h.until(lambda: all(h.rec.successes(r) for r in refs))
    await asyncio.sleep(2 * INTERVAL)  # the creation burst settles into the cadence
    healthy_start = time.monotonic()
    await asyncio.sleep(3 * INTERVAL)
    healthy = [t for t, op in h.aws.timed_calls(healthy_start) if op == "BatchGetSecretValue"]
    assert 5 <= len(healthy) <= 7  # two calls an interval

    sm.put_secret_value(SecretId=keys[0], SecretString="rotated-while-throttled")
    h.aws.inject(Fault("BatchGetSecretValue", code="ThrottlingException"))
    throttled_start = time.monotonic()
    await h.until(lambda: all(h.rec.failures(r) for r in refs), within=30)
    await asyncio.sleep(3 * INTERVAL)
    throttled = [t for t, _ in h.aws.timed_calls(throttled_start)]  # botocore's own retries included
    h.aws.clear_faults()
    recovered_at = time.monotonic()
    # HTTP attempts in any interval never above the healthy two; per-key retries would make dozens
    assert most_in_window(throttled, INTERVAL * 0.95) <= 2, throttled
    assert len(throttled) <= 2 * ((recovered_at - throttled_start) / INTERVAL + 1)
    for r in refs:
        failure = h.rec.failures(r)[-1]
        assert failure.reason == "Throttled"
        assert [s.data for s in h.rec.successes(r)][-1] != {}  # the last good values stay

    await h.until(lambda: all(h.rec.last(r) in h.rec.successes(r) for r in refs), within=60)
    assert h.rec.successes(refs[0])[-1].data == {"V": b"rotated-while-throttled"}
    after = [t for t, _ in h.aws.timed_calls(recovered_at)]
    assert most_in_window(after, INTERVAL * 0.95) <= 3  # back at the cadence, not a burst
