"""Refresh requests, reported next refresh times and an unwritable target, against moto."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tests.aws.conftest import Harness, data, external_secret, store
from tmpfs_secrets.ports import ObjectRef, SinkError, SyncSuccess

ENGINE_LOG = "tmpfs_secrets.engine.reporting"


def ref(name: str) -> ObjectRef:
    return ObjectRef("shop", name)


async def test_refresh_request_delivers_the_new_value_with_interval_zero(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/once", SecretString="first")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("once", {"refreshInterval": "0", "data": data(("V", "app/once"))})
    )
    await harness.until(lambda: harness.rec.successes(ref("once")))
    sm.put_secret_value(SecretId="app/once", SecretString="second")
    await harness.engine.request_refresh(ref("once"))
    await harness.until(lambda: harness.rec.successes(ref("once"))[-1].data == {"V": b"second"})
    assert harness.engine.next_refresh_time(ref("once")) is None
    # fetched once again, and only once: the next value waits for the next request
    sm.put_secret_value(SecretId="app/once", SecretString="third")
    await harness.settle()
    assert [s.data for s in harness.rec.successes(ref("once"))] == [{"V": b"first"}, {"V": b"second"}]


async def test_first_sync_reports_the_next_due_time_even_when_a_fetch_was_repeated(
    harness: Harness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second object asks for the source while the first one's fetch is still running, so the
    source is fetched again at once: the first sync must not report that rerun as the next refresh."""
    sm.create_secret(Name="app/x", SecretString="x")
    await harness.engine.upsert_store(store())
    arrived, proceed = threading.Event(), threading.Event()
    layer = harness.aws.layer
    assert layer is not None
    inner = layer.app

    def gate(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        arrived.set()
        proceed.wait(15)
        return inner(environ, start_response)

    monkeypatch.setattr(layer, "app", gate)
    try:
        spec = {"refreshInterval": "1h", "data": data(("V", "app/x"))}
        await harness.engine.upsert_external_secret(external_secret("a", spec))
        await harness.until(arrived.is_set)  # a's fetch is on its way and held at the server
        await harness.engine.upsert_external_secret(external_secret("b", spec))
    finally:
        proceed.set()
    for name in ("a", "b"):
        first: SyncSuccess = (await harness.until(lambda n=name: harness.rec.successes(ref(n))))[0]
        assert first.next_refresh_time is not None
        assert first.refresh_time < first.next_refresh_time <= first.refresh_time + 3600
    await harness.settle()
    assert len(harness.rec.successes(ref("a"))) == 1 and len(harness.rec.successes(ref("b"))) == 1


async def test_refresh_request_redelivers_unchanged_content(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("es", {"refreshInterval": "1h", "data": data(("V", "app/x"))})
    )
    first = (await harness.until(lambda: harness.rec.successes(ref("es"))))[0]
    # e.g. the Secret was deleted by hand: the sink gets the key set again and decides to write
    await harness.engine.request_refresh(ref("es"))
    await harness.until(lambda: len(harness.rec.successes(ref("es"))) == 2)
    again = harness.rec.successes(ref("es"))[1]
    assert again.content_hash == first.content_hash and again.data == {"V": b"x"}
    assert again.refresh_time > first.refresh_time
    await harness.settle()
    assert len(harness.rec.successes(ref("es"))) == 2  # once per request, not on every refresh


class _Unwritable(SinkError):
    reason = "TargetConflict"


async def test_unwritable_target_logs_one_concise_line_and_recovers(
    harness: Harness, sm: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    value = "v4lue-n0t-for-logs"
    sm.create_secret(Name="app/x", SecretString=value)
    attempts: list[SyncSuccess] = []

    async def refuse(ref_: ObjectRef, result: SyncSuccess) -> None:
        attempts.append(result)
        raise _Unwritable(f"Secret shop/es is not ours; it holds {result.data['V'].decode()}")

    monkeypatch.setattr(harness.rec, "synced", refuse)
    caplog.set_level(logging.DEBUG, logger=ENGINE_LOG)
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("es", {"refreshInterval": "0.2s", "data": data(("V", "app/x"))})
    )
    await harness.until(lambda: len(attempts) >= 4)  # offered again on every refresh
    mine = [r for r in caplog.records if r.name == ENGINE_LOG and "delivering" in r.getMessage()]
    assert [r.levelno for r in mine][:4] == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.DEBUG]
    assert all(r.exc_info is None for r in caplog.records)
    assert "shop/es" in mine[0].getMessage() and "_Unwritable TargetConflict" in mine[0].getMessage()
    assert value not in caplog.text
    monkeypatch.undo()  # the target becomes writable: the next refresh delivers
    delivered = await harness.until(lambda: harness.rec.successes(ref("es")))
    assert delivered[0].data == {"V": value.encode()}


async def test_interval_zero_is_not_done_until_the_sink_took_the_key_set(
    harness: Harness, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    refused: list[ObjectRef] = []

    async def refuse(ref_: ObjectRef, result: SyncSuccess) -> None:
        refused.append(ref_)
        raise _Unwritable("Secret shop/once is not ours")

    monkeypatch.setattr(harness.rec, "synced", refuse)
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("once", {"refreshInterval": "0", "data": data(("V", "app/x"))})
    )
    await harness.until(lambda: refused)
    monkeypatch.undo()
    # any later fetch of its source (here for another object) offers the key set again
    await harness.engine.upsert_external_secret(
        external_secret("busy", {"refreshInterval": "0.2s", "data": data(("V", "app/x"))})
    )
    await harness.until(lambda: harness.rec.successes(ref("busy")))
    delivered = await harness.until(lambda: harness.rec.successes(ref("once")))
    assert [s.data for s in delivered] == [{"V": b"x"}]
