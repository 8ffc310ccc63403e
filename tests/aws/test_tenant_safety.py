"""Tenant safety against moto: whose identity a store may use, how sessions are named and tagged,
and that a value cached under one identity is not served past a new object's own interval."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.aws.conftest import Harness, KubeReads, RecordingSink, data, external_secret, store
from tests.cluster.aws import Fault, MotoServer
from tmpfs_secrets.engine import Engine, EngineSettings
from tmpfs_secrets.errors import Reason
from tmpfs_secrets.ports import ObjectRef, SyncFailure

ROLE = "arn:aws:iam::123456789012:role/tenant"  # moto's account, where the secrets are


@pytest.fixture
async def strict(aws: MotoServer) -> AsyncIterator[Harness]:
    """An engine with the operator's defaults: SecretStores may not use the operator's identity."""
    rec, kube = RecordingSink(), KubeReads()
    engine = Engine(kube, rec, EngineSettings(store_grace=0.0, min_refresh_interval=1.0))
    await engine.start()
    try:
        yield Harness(engine, rec, kube, aws)
    finally:
        await engine.stop()


async def test_a_secretstore_may_not_use_the_operators_identity_by_default(strict: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/db", SecretString="s3cr3t-default-identity")
    await strict.engine.upsert_store(store())
    ready, reason, message = strict.rec.store("aws") or (True, "", "")
    assert not ready and reason == Reason.INVALID_SPEC.value
    assert "serviceAccountRef" in message and "role" in message
    await strict.engine.upsert_external_secret(external_secret("es", {"data": data(("V", "app/db"))}))
    failure = await strict.until(lambda: strict.rec.failures(ObjectRef("shop", "es")))
    assert failure[-1].reason == Reason.STORE_NOT_READY.value
    assert strict.aws.call_counts()["BatchGetSecretValue"] == 0

    # An admin's ClusterSecretStore may; so may a SecretStore that assumes a role.
    await strict.engine.upsert_store(store("shared", kind="ClusterSecretStore"))
    await strict.engine.upsert_store(store("tenant", role=ROLE))
    assert strict.rec.store("shared") == (True, "Valid", "SecretsManager in us-east-1 is ready to use")
    assert (strict.rec.store("tenant") or (False,))[0] is True
    for name, ref in [("c", {"name": "shared", "kind": "ClusterSecretStore"}), ("t", {"name": "tenant"})]:
        spec = {"secretStoreRef": ref, "data": data(("V", "app/db"))}
        await strict.engine.upsert_external_secret(external_secret(name, spec))
        synced = await strict.until(lambda n=name: strict.rec.successes(ObjectRef("shop", n)), within=5)
        assert synced[-1].data == {"V": b"s3cr3t-default-identity"}


async def test_every_assume_role_names_and_tags_its_store(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/db", SecretString="v")
    long_ns = "n" * 63
    # A one-letter ClusterSecretStore and two stores in one 63-character namespace.
    await harness.engine.upsert_store(store("a", kind="ClusterSecretStore", role=ROLE))
    await harness.engine.upsert_store(store("aws", namespace=long_ns, role=ROLE))
    await harness.engine.upsert_store(store("aws-2", namespace=long_ns, role=ROLE))
    specs = [
        ("c", "shop", {"secretStoreRef": {"name": "a", "kind": "ClusterSecretStore"}}),
        ("x", long_ns, {"secretStoreRef": {"name": "aws"}}),
        ("y", long_ns, {"secretStoreRef": {"name": "aws-2"}}),
    ]
    for name, ns, spec in specs:
        await harness.engine.upsert_external_secret(
            external_secret(name, {**spec, "data": data(("V", "app/db"))}, namespace=ns)
        )
    for name, ns, _ in specs:
        await harness.until(lambda n=name, s=ns: harness.rec.successes(ObjectRef(s, n)))
    bodies = harness.aws.request_bodies("AssumeRole")
    sessions = sorted(b.split("RoleSessionName=")[1].split("&")[0] for b in bodies)
    assert len(sessions) == 3 and len(set(sessions)) == 3, sessions
    assert "cluster@a" in sessions
    assert all(2 <= len(s) <= 64 for s in sessions)
    tenant = [b for b in bodies if f"Value={long_ns}" in b]
    assert len(tenant) == 2 and all("Key=kubernetes-namespace" in b for b in tenant)
    assert all("Key=secret-store" in b for b in bodies)


async def test_a_role_that_refuses_session_tags_is_assumed_without_them(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/db", SecretString="v")
    harness.aws.inject(
        Fault("AssumeRole", code="AccessDenied", message="sts:TagSession", status=403, remaining=1)
    )
    await harness.engine.upsert_store(store(role=ROLE))
    await harness.engine.upsert_external_secret(external_secret("es", {"data": data(("V", "app/db"))}))
    await harness.until(lambda: harness.rec.successes(ObjectRef("shop", "es")))
    assert [op for _, op in harness.aws.timed_calls()].count("AssumeRole") == 2
    (answered,) = harness.aws.request_bodies("AssumeRole")
    assert "Tags" not in answered and "RoleSessionName=shop.aws" in answered


async def test_a_new_object_is_not_served_a_value_older_than_its_interval(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/db", SecretString="before-revocation")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("old", {"refreshInterval": "1h", "data": data(("V", "app/db"))})
    )
    await harness.until(lambda: harness.rec.successes(ObjectRef("shop", "old")))
    # Access is revoked in AWS. A new object with a long interval may still get the young value...
    for op in ("BatchGetSecretValue", "GetSecretValue"):
        harness.aws.inject(Fault(op, code="AccessDeniedException", message="revoked", status=400))
    await harness.engine.upsert_external_secret(
        external_secret("same", {"refreshInterval": "1h", "data": data(("V", "app/db"))})
    )
    got = await harness.until(lambda: harness.rec.successes(ObjectRef("shop", "same")))
    assert got[-1].data == {"V": b"before-revocation"}
    # ...but one whose interval is shorter than the value's age asks AWS, and is refused.
    await harness.until(lambda: time.time() > _fetched_at(harness) + 1)
    await harness.engine.upsert_external_secret(
        external_secret("new", {"refreshInterval": "1s", "data": data(("V", "app/db"))})
    )
    failures = await harness.until(lambda: harness.rec.failures(ObjectRef("shop", "new")))
    assert isinstance(failures[-1], SyncFailure) and failures[-1].reason == Reason.ACCESS_DENIED.value
    assert harness.rec.successes(ObjectRef("shop", "new")) == []
    # With refreshInterval 0 (fetch once) nothing cached is young enough either.
    await harness.engine.upsert_external_secret(
        external_secret("once", {"refreshInterval": "0", "data": data(("V", "app/db"))})
    )
    failures = await harness.until(lambda: harness.rec.failures(ObjectRef("shop", "once")))
    assert failures[-1].reason == Reason.ACCESS_DENIED.value


def _fetched_at(harness: Harness) -> float:
    """When the one source in use was fetched (by the engine's clock, the system's here)."""
    (src,) = harness.engine._subscriptions.sources()
    entry = harness.engine._fetcher.entry(src)
    assert entry is not None
    return entry.fetched_at
