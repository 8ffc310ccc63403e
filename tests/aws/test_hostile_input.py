"""Hostile and odd input against moto: keys Kubernetes refuses, text that is not Unicode, AWS's
odd answers, unexpected exceptions, and refresh intervals out of range. No value (nor a JSON key
of a value) ever reaches a message or a log line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.aws.conftest import Harness, data, external_secret, store
from tests.cluster.aws import Fault
from tmpfs_secrets.errors import Reason
from tmpfs_secrets.ports import ObjectRef, SyncFailure, SyncSuccess

REFUSED = [".", "..", "..x", "...", "", "k" * 254, "clé-hunter2"]


def ref(name: str) -> ObjectRef:
    return ObjectRef("shop", name)


def texts(harness: Harness, caplog: pytest.LogCaptureFixture) -> list[str]:
    return [*harness.rec.messages(), caplog.text, *(repr(r) for _, _, r in harness.rec.events)]


async def test_bad_keys_from_extract_are_reported_and_the_good_ones_delivered(
    harness: Harness, sm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    doc = {key: f"val-{i}-Zq9" for i, key in enumerate(REFUSED)} | {"good": "fine-Zq9"}
    sm.create_secret(Name="app/json", SecretString=json.dumps(doc))
    sm.create_secret(Name="app/plain", SecretString="plain-Zq9")
    caplog.set_level(logging.DEBUG)  # from here on: what the operator's side logs
    await harness.engine.upsert_store(store())
    spec = {"dataFrom": [{"extract": {"key": "app/json"}}], "data": data(("PLAIN", "app/plain"))}
    await harness.engine.upsert_external_secret(external_secret("es", spec))
    await harness.until(lambda: harness.rec.failures(ref("es")) and harness.rec.successes(ref("es")))
    await harness.settle()
    assert harness.rec.successes(ref("es"))[-1].data == {"good": b"fine-Zq9", "PLAIN": b"plain-Zq9"}
    failure = harness.rec.last(ref("es"))
    assert isinstance(failure, SyncFailure) and failure.reason == Reason.INVALID_PROPERTY.value
    assert f"{len(REFUSED)} top-level keys" in failure.message
    for text in texts(harness, caplog):
        assert "Zq9" not in text and "hunter2" not in text and "clé" not in text


async def test_bad_keys_from_find_are_reported_and_the_good_ones_delivered(
    harness: Harness, ssm: Any
) -> None:
    for name in ("/odd/good", "/odd/..x", "/odd/...", "/odd/" + "k" * 254):
        ssm.put_parameter(Name=name, Value="v", Type="String")
    await harness.engine.upsert_store(store(service="ParameterStore"))
    await harness.engine.upsert_external_secret(
        external_secret("es", {"dataFrom": [{"find": {"path": "/odd/"}}]})
    )
    await harness.until(lambda: harness.rec.failures(ref("es")) and harness.rec.successes(ref("es")))
    await harness.settle()
    assert harness.rec.successes(ref("es"))[-1].data == {"good": b"v"}
    failure = harness.rec.last(ref("es"))
    assert isinstance(failure, SyncFailure) and "/odd/..x" in failure.message


async def test_text_that_is_not_unicode_gets_a_clear_status(
    harness: Harness, sm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sm.create_secret(Name="app/surrogate", SecretString='{"password": "\\ud800Zq9"}')
    sm.create_secret(Name="app/lone", SecretString="\ud800Zq9")
    sm.create_secret(Name="app/binary", SecretBinary=b"\xff\xfeZq9")
    caplog.set_level(logging.DEBUG)
    await harness.engine.upsert_store(store())
    specs: dict[str, list[dict[str, Any]]] = {
        "prop": [{"secretKey": "P", "remoteRef": {"key": "app/surrogate", "property": "password"}}],
        "bin": [{"secretKey": "P", "remoteRef": {"key": "app/binary", "property": "password"}}],
        "whole": data(("P", "app/lone"), ("B", "app/binary")),
    }
    for name, items in specs.items():
        await harness.engine.upsert_external_secret(external_secret(name, {"data": items}))
    await harness.until(lambda: all(harness.rec.last(ref(n)) for n in specs))
    await harness.settle()
    for name in ("prop", "bin"):
        failure = harness.rec.last(ref(name))
        assert isinstance(failure, SyncFailure) and failure.reason == Reason.INVALID_PROPERTY.value
    whole = harness.rec.last(ref("whole"))
    assert isinstance(whole, SyncSuccess) and whole.data["B"] == b"\xff\xfeZq9"
    assert "Traceback" not in caplog.text
    for text in texts(harness, caplog):
        assert "Zq9" not in text


async def test_scheduled_deletion_and_a_bare_403_have_stable_reasons(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/doomed", SecretString="v")
    sm.create_secret(Name="app/guarded", SecretString="v")
    sm.delete_secret(SecretId="app/doomed", RecoveryWindowInDays=7)
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("doomed", {"data": data(("V", "app/doomed"))})
    )
    failure = (await harness.until(lambda: harness.rec.failures(ref("doomed"))))[-1]
    assert failure.reason == Reason.SOURCE_NOT_FOUND.value and "scheduled for deletion" in failure.message

    for op in ("BatchGetSecretValue", "GetSecretValue"):
        harness.aws.inject(Fault(op, code="", status=403))
    await harness.engine.upsert_external_secret(
        external_secret("guarded", {"data": data(("V", "app/guarded"))})
    )
    failure = (await harness.until(lambda: harness.rec.failures(ref("guarded"))))[-1]
    assert failure.reason == Reason.ACCESS_DENIED.value


async def test_an_unexpected_exception_becomes_a_status_and_a_traceback_without_values(
    harness: Harness, sm: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmpfs_secrets.engine import evaluation

    real = evaluation.item_keys

    def flaky(item: Any, source: Any, value: Any) -> Any:
        if source.key == "app/bug":
            raise RuntimeError(f"boom with {value.value.decode()}")  # a message that quotes the value
        return real(item, source, value)

    monkeypatch.setattr(evaluation, "item_keys", flaky)
    sm.create_secret(Name="app/bug", SecretString="bug-Zq9")
    sm.create_secret(Name="app/fine", SecretString="fine")
    caplog.set_level(logging.DEBUG)
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(external_secret("bug", {"data": data(("V", "app/bug"))}))
    await harness.engine.upsert_external_secret(external_secret("fine", {"data": data(("V", "app/fine"))}))
    await harness.until(lambda: harness.rec.failures(ref("bug")) and harness.rec.successes(ref("fine")))
    failure = harness.rec.failures(ref("bug"))[-1]
    assert failure.reason == Reason.INTERNAL_ERROR.value and "log" in failure.message
    assert "Traceback" in caplog.text and "RuntimeError" in caplog.text and "flaky" in caplog.text
    for text in texts(harness, caplog):
        assert "Zq9" not in text


@pytest.mark.parametrize(("interval", "words"), [("50ms", "shorter"), ("87601h", "too long")])
async def test_refresh_intervals_out_of_range_name_the_allowed_range(
    harness: Harness, interval: str, words: str
) -> None:
    await harness.engine.upsert_store(store())
    spec = {"refreshInterval": interval, "data": data(("V", "app/x"))}
    await harness.engine.upsert_external_secret(external_secret("es", spec))
    failure = (await harness.until(lambda: harness.rec.failures(ref("es"))))[-1]
    assert failure.reason == Reason.INVALID_SPEC.value
    assert (
        words in failure.message
        and "from 0.1s to 87600h" in failure.message
        and "0 to fetch once" in failure.message
    )


async def test_a_sink_failure_it_did_not_declare_is_logged_with_its_traceback(
    harness: Harness, sm: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.create_secret(Name="app/x", SecretString="x-Zq9")
    caplog.set_level(logging.DEBUG)

    async def broken(ref_: ObjectRef, result: SyncSuccess) -> None:
        raise ValueError(f"bug holding {result.data['V'].decode()}")

    monkeypatch.setattr(harness.rec, "synced", broken)
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(external_secret("es", {"data": data(("V", "app/x"))}))
    await harness.until(lambda: "failed unexpectedly" in caplog.text)
    assert "ValueError (message withheld)" in caplog.text and "Traceback" in caplog.text
    assert "Zq9" not in caplog.text
