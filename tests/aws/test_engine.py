"""The engine end to end against moto: batching, fan-out, failures that keep values, policies."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.aws.conftest import Harness, KubeReads, RecordingSink, data, external_secret, store
from tests.cluster.aws import Fault, MotoServer
from tmpfs_secrets.engine import Engine, EngineSettings
from tmpfs_secrets.errors import Reason
from tmpfs_secrets.ports import ObjectRef, SyncFailure, SyncSuccess

SHOP = "shop"


def ref(name: str, namespace: str = SHOP) -> ObjectRef:
    return ObjectRef(namespace, name)


async def test_many_external_secrets_share_batched_calls(harness: Harness, sm: Any) -> None:
    for i in range(45):
        sm.create_secret(Name=f"app/s{i}", SecretString=f"value-{i}")
    await harness.engine.upsert_store(store())
    harness.aws.reset_calls()
    # 90 ExternalSecrets over 45 keys: every key used twice
    for i in range(90):
        await harness.engine.upsert_external_secret(
            external_secret(f"es{i}", {"data": data(("V", f"app/s{i % 45}"))})
        )
    await harness.until(lambda: all(harness.rec.successes(ref(f"es{i}")) for i in range(90)))
    assert harness.aws.call_counts()["BatchGetSecretValue"] <= 6  # ~3 if they had all arrived together
    assert harness.aws.call_counts()["GetSecretValue"] == 0
    got = harness.rec.successes(ref("es50"))[-1]
    assert got.data == {"V": b"value-5"} and got.content_hash.startswith("sha256:")
    assert harness.rec.store("aws") == (True, "Valid", "SecretsManager in us-east-1 is ready to use")


async def test_forty_five_keys_of_one_object_cost_three_batch_calls(harness: Harness, sm: Any) -> None:
    for i in range(45):
        sm.create_secret(Name=f"app/s{i}", SecretString=f"value-{i}")
    await harness.engine.upsert_store(store())
    harness.aws.reset_calls()
    spec = {"data": data(*[(f"K{i}", f"app/s{i}") for i in range(45)])}
    await harness.engine.upsert_external_secret(external_secret("big", spec))
    result = await harness.until(lambda: harness.rec.successes(ref("big")))
    assert harness.aws.call_counts()["BatchGetSecretValue"] == 3
    assert len(result[-1].data) == 45 and result[-1].sources == 45


async def test_parameter_store_25_names_cost_three_calls(harness: Harness, ssm: Any) -> None:
    for i in range(25):
        ssm.put_parameter(Name=f"/app/p{i}", Value=f"v{i}", Type="SecureString")
    await harness.engine.upsert_store(store(service="ParameterStore"))
    harness.aws.reset_calls()
    spec = {"data": data(*[(f"P{i}", f"/app/p{i}") for i in range(25)])}
    await harness.engine.upsert_external_secret(external_secret("params", spec))
    result = await harness.until(lambda: harness.rec.successes(ref("params")))
    assert harness.aws.call_counts()["GetParameters"] == 3
    assert result[-1].data["P24"] == b"v24" and result[-1].versions["P24"] == "1"


async def test_missing_key_fails_only_its_external_secret(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/ok", SecretString="fine")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(external_secret("good", {"data": data(("A", "app/ok"))}))
    await harness.engine.upsert_external_secret(
        external_secret("bad", {"data": data(("A", "app/ok"), ("B", "app/typo"))})
    )
    await harness.until(lambda: harness.rec.successes(ref("good")) and harness.rec.failures(ref("bad")))
    failure = harness.rec.failures(ref("bad"))[-1]
    assert failure.reason == Reason.SOURCE_NOT_FOUND.value and "app/typo" in failure.message
    assert harness.rec.successes(ref("bad")) == []  # an incomplete first set is never delivered


async def test_nested_property_extract_and_binary(harness: Harness, sm: Any) -> None:
    doc = {"db": {"password": "pw-nested", "port": 5432}, "user": "admin"}
    sm.create_secret(Name="app/json", SecretString=json.dumps(doc))
    sm.create_secret(Name="app/bin", SecretBinary=b"\x00\x01\x02")
    await harness.engine.upsert_store(store())
    spec = {
        "data": [
            {"secretKey": "DB_PASSWORD", "remoteRef": {"key": "app/json", "property": "db.password"}},
            {"secretKey": "DB_PORT", "remoteRef": {"key": "app/json", "property": "db.port"}},
            {"secretKey": "blob", "remoteRef": {"key": "app/bin"}},
        ],
        "dataFrom": [{"extract": {"key": "app/json"}}],
    }
    await harness.engine.upsert_external_secret(external_secret("mixed", spec))
    result = (await harness.until(lambda: harness.rec.successes(ref("mixed"))))[-1]
    assert result.data == {
        "DB_PASSWORD": b"pw-nested",
        "DB_PORT": b"5432",
        "blob": b"\x00\x01\x02",
        "db": b'{"password":"pw-nested","port":5432}',
        "user": b"admin",
    }
    assert result.sources == 2  # app/json is fetched once for three items


async def test_invalid_property_is_reported_with_what_to_change(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/json", SecretString=json.dumps({"password": "pw"}))
    await harness.engine.upsert_store(store())
    spec = {"data": [{"secretKey": "P", "remoteRef": {"key": "app/json", "property": "pasword"}}]}
    await harness.engine.upsert_external_secret(external_secret("typo", spec))
    failure = (await harness.until(lambda: harness.rec.failures(ref("typo"))))[-1]
    assert failure.reason == "InvalidProperty"
    assert "'pasword'" in failure.message and "remoteRef.property" in failure.message


async def test_find_by_path_with_pagination(harness: Harness, ssm: Any) -> None:
    for i in range(15):
        ssm.put_parameter(Name=f"/shop/prod/k{i}", Value=f"v{i}", Type="String")
    ssm.put_parameter(Name="/shop/prod/db/host", Value="db.local", Type="String")
    await harness.engine.upsert_store(store(service="ParameterStore"))
    spec = {"dataFrom": [{"find": {"path": "/shop/prod/"}}]}
    await harness.engine.upsert_external_secret(external_secret("found", spec))
    result = (await harness.until(lambda: harness.rec.successes(ref("found"))))[-1]
    assert len(result.data) == 16 and result.data["db_host"] == b"db.local" and result.data["k9"] == b"v9"
    assert harness.aws.call_counts()["GetParametersByPath"] >= 2


async def test_find_by_name_or_tags_needs_secrets_manager(harness: Harness) -> None:
    await harness.engine.upsert_store(store(service="ParameterStore"))
    await harness.engine.upsert_external_secret(
        external_secret("f", {"dataFrom": [{"find": {"name": {"regexp": "^p"}}}]})
    )
    failure = (await harness.until(lambda: harness.rec.failures(ref("f"))))[-1]
    assert failure.reason == "InvalidSpec" and "SecretsManager" in failure.message
    await harness.engine.upsert_external_secret(
        external_secret("g", {"dataFrom": [{"find": {"path": "relative/"}}]})
    )
    failure = (await harness.until(lambda: harness.rec.failures(ref("g"))))[-1]
    assert failure.reason == "InvalidSpec" and "must start with '/'" in failure.message


async def test_rotation_reaches_the_target_within_the_interval(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/rot", SecretString="old-value")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("rot", {"refreshInterval": "1s", "data": data(("V", "app/rot"))})
    )
    first = (await harness.until(lambda: harness.rec.successes(ref("rot"))))[-1]
    sm.put_secret_value(SecretId="app/rot", SecretString="new-value")
    await harness.until(lambda: harness.rec.successes(ref("rot"))[-1].data == {"V": b"new-value"})
    second = harness.rec.successes(ref("rot"))[-1]
    assert second.content_hash != first.content_hash and second.versions != first.versions
    # nothing changed since: no further synced calls although refreshes continue
    count = len(harness.rec.successes(ref("rot")))
    calls = harness.aws.call_counts()["BatchGetSecretValue"]
    await harness.until(lambda: harness.aws.call_counts()["BatchGetSecretValue"] >= calls + 2)
    assert len(harness.rec.successes(ref("rot"))) == count


async def test_throttling_keeps_last_good_values(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/t", SecretString="good-value")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(external_secret("t", {"data": data(("V", "app/t"))}))
    await harness.until(lambda: harness.rec.successes(ref("t")))
    sm.put_secret_value(SecretId="app/t", SecretString="rotated-value")
    harness.aws.inject(Fault("BatchGetSecretValue", code="ThrottlingException"))
    await harness.engine.request_refresh(ref("t"))
    failure = await harness.until(lambda: isinstance(harness.rec.last(ref("t")), SyncFailure))
    assert failure
    last = harness.rec.last(ref("t"))
    assert isinstance(last, SyncFailure) and last.reason == "Throttled"
    assert [s.data for s in harness.rec.successes(ref("t"))] == [{"V": b"good-value"}]
    harness.aws.clear_faults()  # the backoff retry gets through
    await harness.until(lambda: isinstance(harness.rec.last(ref("t")), SyncSuccess))
    assert harness.rec.successes(ref("t"))[-1].data == {"V": b"rotated-value"}


async def test_pinned_version_is_fetched_once(harness: Harness, sm: Any) -> None:
    version = sm.create_secret(Name="app/pin", SecretString="pinned")["VersionId"]
    await harness.engine.upsert_store(store())
    harness.aws.reset_calls()
    spec = {"refreshInterval": "0.2s", "data": data(("V", "app/pin"), version=version)}
    await harness.engine.upsert_external_secret(external_secret("pin", spec))
    await harness.until(lambda: harness.rec.successes(ref("pin")))
    # a second, refreshing object keeps the scheduler busy meanwhile
    sm.create_secret(Name="app/busy", SecretString="b")
    await harness.engine.upsert_external_secret(
        external_secret("busy", {"refreshInterval": "0.2s", "data": data(("V", "app/busy"))})
    )
    await harness.until(lambda: harness.aws.call_counts()["BatchGetSecretValue"] >= 4)
    assert harness.aws.call_counts()["GetSecretValue"] == 1


async def test_refresh_interval_zero_fetches_once(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/once", SecretString="x")
    sm.create_secret(Name="app/busy", SecretString="b")
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_external_secret(
        external_secret("once", {"refreshInterval": "0", "data": data(("V", "app/once"))})
    )
    await harness.until(lambda: harness.rec.successes(ref("once")))
    sm.put_secret_value(SecretId="app/once", SecretString="changed")
    await harness.engine.upsert_external_secret(
        external_secret("busy", {"refreshInterval": "0.2s", "data": data(("V", "app/busy"))})
    )
    calls = harness.aws.call_counts()["BatchGetSecretValue"]
    await harness.until(lambda: harness.aws.call_counts()["BatchGetSecretValue"] >= calls + 3)
    assert [s.data for s in harness.rec.successes(ref("once"))] == [{"V": b"x"}]
    assert harness.engine.next_refresh_time(ref("once")) is None


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_deleted_source_follows_the_deletion_policy(harness: Harness, sm: Any, policy: str) -> None:
    sm.create_secret(Name="app/keep", SecretString="k")
    sm.create_secret(Name="app/gone", SecretString="g")
    await harness.engine.upsert_store(store())
    spec = {
        "refreshInterval": "0.3s",
        "target": {"deletionPolicy": policy},
        "data": data(("KEEP", "app/keep"), ("GONE", "app/gone")),
    }
    await harness.engine.upsert_external_secret(external_secret("p", spec))
    await harness.until(lambda: harness.rec.successes(ref("p")))
    sm.delete_secret(SecretId="app/gone", ForceDeleteWithoutRecovery=True)
    if policy == "Retain":
        failure = await harness.until(lambda: harness.rec.failures(ref("p")))
        assert failure[-1].reason == "SourceNotFound" and "Retain" in failure[-1].message
        assert harness.rec.successes(ref("p"))[-1].data == {"KEEP": b"k", "GONE": b"g"}
        assert len(harness.rec.successes(ref("p"))) == 1
    else:
        result = await harness.until(lambda: len(harness.rec.successes(ref("p"))) > 1)
        assert result
        last = harness.rec.successes(ref("p"))[-1]
        assert last.data == {"KEEP": b"k"} and last.removed_keys == frozenset({"GONE"})


async def test_store_resolution_rules(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    await harness.engine.upsert_store(store(namespace="other"))
    cluster = store(name="shared", kind="ClusterSecretStore")
    cluster["spec"]["conditions"] = [{"namespaceSelector": {"matchLabels": {"secrets": "yes"}}}]
    await harness.engine.upsert_store(cluster)
    harness.kube.labels["allowed"] = {"secrets": "yes"}
    await harness.engine.upsert_external_secret(external_secret("other-ns", {"data": data(("V", "app/x"))}))
    to_cluster = {
        "secretStoreRef": {"name": "shared", "kind": "ClusterSecretStore"},
        "data": data(("V", "app/x")),
    }
    await harness.engine.upsert_external_secret(external_secret("denied", to_cluster))
    await harness.engine.upsert_external_secret(external_secret("admitted", to_cluster, namespace="allowed"))
    await harness.until(lambda: harness.rec.successes(ref("admitted", "allowed")))
    assert harness.rec.failures(ref("other-ns"))[-1].reason == "StoreNotFound"
    assert "SecretStore shop/aws does not exist" in harness.rec.failures(ref("other-ns"))[-1].message
    assert harness.rec.failures(ref("denied"))[-1].reason == "StoreNotAllowed"
    # the store appears: the waiting ExternalSecret syncs
    await harness.engine.upsert_store(store())
    await harness.until(lambda: harness.rec.successes(ref("other-ns")))


async def test_store_auth_problems_make_it_not_ready(harness: Harness) -> None:
    harness.kube.accounts[("shop", "no-role")] = None
    await harness.engine.upsert_store(store(name="sa", auth={"serviceAccountRef": {"name": "no-role"}}))
    ready, reason, message = harness.rec.store("sa") or (None, "", "")
    assert ready is False and reason == "StoreNotReady" and "eks.amazonaws.com/role-arn" in message
    await harness.engine.upsert_store(
        store(
            name="st",
            auth={
                "secretRef": {
                    "accessKeyIDSecretRef": {"name": "keys", "key": "id"},
                    "secretAccessKeySecretRef": {"name": "keys", "key": "secret"},
                }
            },
        )
    )
    ready, reason, message = harness.rec.store("st") or (None, "", "")
    assert ready is False and "Secret shop/keys has no key 'id'" in message
    await harness.engine.upsert_store(store(name="bad", region="mars"))
    assert harness.rec.store("bad") is not None and harness.rec.store("bad")[1] == "InvalidSpec"  # type: ignore[index]
    spec = {"secretStoreRef": {"name": "sa"}, "data": data(("V", "app/x"))}
    await harness.engine.upsert_external_secret(external_secret("uses-sa", spec))
    failure = harness.rec.failures(ref("uses-sa"))[-1]
    assert failure.reason == "StoreNotReady" and "role-arn" in failure.message


async def test_service_account_store_syncs_as_the_tenant_role(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    # moto serves an assumed role's calls from the role's account: use the account the secret is in
    harness.kube.accounts[("shop", "reader")] = "arn:aws:iam::123456789012:role/reader"
    await harness.engine.upsert_store(store(auth={"serviceAccountRef": {"name": "reader"}}))
    await harness.engine.upsert_external_secret(external_secret("es", {"data": data(("V", "app/x"))}))
    await harness.until(lambda: harness.rec.successes(ref("es")))
    assert harness.aws.call_counts()["AssumeRoleWithWebIdentity"] == 1


async def test_invalid_spec_is_reported_not_raised(harness: Harness) -> None:
    await harness.engine.upsert_external_secret(external_secret("broken", {"refreshInterval": "often"}))
    failure = harness.rec.failures(ref("broken"))[-1]
    assert failure.reason == "InvalidSpec" and "refreshInterval" in failure.message


async def test_restart_spreads_instead_of_fetching_at_once(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    await harness.engine.upsert_store(store())
    harness.aws.reset_calls()
    body = external_secret("seen", {"refreshInterval": "1h", "data": data(("V", "app/x"))}, generation=4)
    body["status"] = {"contentHash": "sha256:abc", "conditions": [{"type": "Ready", "observedGeneration": 4}]}
    await harness.engine.upsert_external_secret(body)
    await harness.settle()
    assert harness.aws.call_counts()["BatchGetSecretValue"] == 0
    next_time = harness.engine.next_refresh_time(ref("seen"))
    assert next_time is not None
    # a refresh request runs at once
    await harness.engine.request_refresh(ref("seen"))
    await harness.until(lambda: harness.rec.successes(ref("seen")))


async def test_unchanged_refreshes_report_nothing_and_spec_changes_report_again(
    harness: Harness, sm: Any
) -> None:
    sm.create_secret(Name="app/x", SecretString="x")
    await harness.engine.upsert_store(store())
    body = external_secret("es", {"data": data(("V", "app/x"))})
    await harness.engine.upsert_external_secret(body)
    await harness.until(lambda: harness.rec.successes(ref("es")))
    await harness.engine.upsert_external_secret(body)  # e.g. a resume with the same spec
    await harness.settle()  # (a refresh request does re-deliver: see test_engine_refresh.py)
    assert len(harness.rec.successes(ref("es"))) == 1
    changed = external_secret("es", {"data": data(("RENAMED", "app/x"))}, generation=2)
    await harness.engine.upsert_external_secret(changed)
    result = await harness.until(lambda: len(harness.rec.successes(ref("es"))) == 2)
    assert result
    last = harness.rec.successes(ref("es"))[-1]
    assert last.data == {"RENAMED": b"x"} and last.removed_keys == frozenset({"V"})


async def test_no_secret_value_in_any_message_or_log(
    harness: Harness, sm: Any, ssm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seeded = ["Sup3rS3cretPassw0rd", "srv-role-key-4a7f", "ssm-token-99x"]
    sm.create_secret(Name="app/db", SecretString=json.dumps({"password": seeded[0]}))
    sm.create_secret(Name="app/key", SecretString=seeded[1])
    ssm.put_parameter(Name="/app/tok", Value=seeded[2], Type="SecureString")
    caplog.set_level(logging.DEBUG)  # everything the operator's side logs from here, botocore included
    await harness.engine.upsert_store(store())
    await harness.engine.upsert_store(store(name="params", service="ParameterStore"))
    specs: dict[str, dict[str, Any]] = {
        "ok": {"data": [{"secretKey": "P", "remoteRef": {"key": "app/db", "property": "password"}}]},
        "typo": {"data": [{"secretKey": "P", "remoteRef": {"key": "app/db", "property": "pasword"}}]},
        "notjson": {"data": [{"secretKey": "P", "remoteRef": {"key": "app/key", "property": "x"}}]},
        "extract": {"dataFrom": [{"extract": {"key": "app/key"}}]},
        "ssm": {
            "secretStoreRef": {"name": "params"},
            "data": [{"secretKey": "T", "remoteRef": {"key": "/app/tok", "property": "x"}}],
        },
    }
    for name, spec in specs.items():
        await harness.engine.upsert_external_secret(external_secret(name, spec))
    await harness.until(lambda: all(harness.rec.last(ref(n)) for n in specs))
    harness.aws.inject(Fault("BatchGetSecretValue", code="ThrottlingException"))
    await harness.engine.request_refresh(ref("ok"))
    await harness.until(lambda: isinstance(harness.rec.last(ref("ok")), SyncFailure))
    await harness.settle()
    assert harness.rec.successes(ref("ok"))[-1].data == {"P": seeded[0].encode()}  # the value did flow
    texts = [*harness.rec.messages(), caplog.text, *(repr(r) for _, _, r in harness.rec.events)]
    for text in texts:
        for value in seeded:
            assert value not in text


async def test_a_restart_whose_store_comes_after_its_external_secrets_is_spread_too(
    aws: MotoServer, sm: Any
) -> None:
    """After a restart the ExternalSecrets' watch may deliver before the stores' one: those waiting
    for their store in the grace period join the spread schedule when it comes, as if it had come
    first, instead of all being fetched at once."""
    for key in ("app/a", "app/b"):
        sm.create_secret(Name=key, SecretString="x")
    rec = RecordingSink()
    engine = Engine(KubeReads(), rec, EngineSettings(store_grace=30.0, allow_operator_identity=True))
    await engine.start()
    try:
        aws.reset_calls()
        for name, key in (("seen-1", "app/a"), ("seen-2", "app/b")):
            body = external_secret(name, {"refreshInterval": "1h", "data": data(("V", key))}, generation=4)
            body["status"] = {
                "contentHash": "sha256:abc",
                "conditions": [{"type": "Ready", "observedGeneration": 4}],
            }
            await engine.upsert_external_secret(body)
        await engine.upsert_store(store())
        await Harness(engine, rec, KubeReads(), aws).settle()
        assert aws.call_counts().get("BatchGetSecretValue", 0) == 0  # due later in the interval
        for name in ("seen-1", "seen-2"):
            assert not rec.successes(ref(name)) and not rec.failures(ref(name))
            assert engine.next_refresh_time(ref(name)) is not None
    finally:
        await engine.stop()
