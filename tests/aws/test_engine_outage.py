"""A steady AWS outage: each ExternalSecret is reported failed once, not once per backoff retry."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.aws.conftest import Harness, data, external_secret, store
from tests.cluster.aws import Fault
from tmpfs_secrets.ports import ObjectRef

FETCH_OPERATIONS = {
    "SecretsManager": ("BatchGetSecretValue", "GetSecretValue"),
    "ParameterStore": ("GetParameters", "GetParameter"),
}


@pytest.mark.parametrize("service", sorted(FETCH_OPERATIONS))
async def test_a_steady_outage_reports_each_object_failed_once_and_keeps_its_values(
    harness: Harness, sm: Any, ssm: Any, service: str
) -> None:
    # Shared sources refreshed together, so the first failing call is one batch of all of them
    # and the jittered retries come back in smaller batches: the failure must not depend on that.
    keys = [f"/app/outage-{i}" if service == "ParameterStore" else f"app/outage-{i}" for i in range(6)]
    for i, key in enumerate(keys):
        if service == "ParameterStore":
            ssm.put_parameter(Name=key, Value=f"value-{i}", Type="SecureString")
        else:
            sm.create_secret(Name=key, SecretString=f"value-{i}")
    refs = [ObjectRef("shop", f"es-{i}") for i in range(12)]
    await harness.engine.upsert_store(store(service=service))
    for i, r in enumerate(refs):
        spec = {"refreshInterval": "1s", "data": data(("V", keys[i % len(keys)]))}
        await harness.engine.upsert_external_secret(external_secret(r.name, spec))
    await harness.until(lambda: all(harness.rec.successes(r) for r in refs))
    await harness.settle()

    for operation in FETCH_OPERATIONS[service]:
        harness.aws.inject(Fault(operation, code="InternalFailure", message="oops", status=500))
    await harness.until(lambda: all(harness.rec.failures(r) for r in refs))
    outage_start = time.monotonic()
    # Several backoff retries (base 0.2 s, cap 1 s) of the same outage.
    await asyncio.sleep(3.0)
    await harness.settle()
    assert len(harness.aws.timed_calls(outage_start)) >= 6, "the outage was retried several times"

    for i, r in enumerate(refs):
        failures = harness.rec.failures(r)
        assert len(failures) == 1, [f.message for f in failures]
        failure = failures[0]
        assert failure.reason == "ProviderError"
        assert keys[i % len(keys)] in failure.message  # says which key, not how many were in the call
        assert "InternalFailure" in failure.message
        assert "value-" not in failure.message
        last = harness.rec.successes(r)
        assert len(last) == 1 and last[0].data == {"V": f"value-{i % len(keys)}".encode()}
