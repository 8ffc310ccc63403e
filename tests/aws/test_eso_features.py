"""ESO's most used ExternalSecret features through the engine against moto: target.template,
decodingStrategy, dataFrom.extract.property and refreshPolicy."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.aws.conftest import Harness, external_secret, store
from tmpfs_secrets.ports import ObjectRef, SyncSuccess

DOC = {"db": {"user": "app", "password": "p@ss"}, "cert": base64.b64encode(b"\x00PEM").decode()}


def ref(name: str) -> ObjectRef:
    return ObjectRef("shop", name)


async def test_template_decoding_and_nested_extract(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/json", SecretString=json.dumps(DOC))
    sm.create_secret(Name="app/b64url", SecretString=base64.urlsafe_b64encode(b"\xff\xfe").decode())
    await harness.engine.upsert_store(store())
    spec = {
        "data": [
            {
                "secretKey": "cert",
                "remoteRef": {"key": "app/json", "property": "cert", "decodingStrategy": "Base64"},
            },
            {"secretKey": "raw", "remoteRef": {"key": "app/b64url", "decodingStrategy": "Auto"}},
        ],
        "dataFrom": [{"extract": {"key": "app/json", "property": "db"}}],
        "target": {
            "template": {
                "mergePolicy": "Merge",
                "data": {"url": "postgres://{{ .user }}:{{ .password | urlquery }}@db/app"},
            }
        },
    }
    await harness.engine.upsert_external_secret(external_secret("es", spec))
    got = (await harness.until(lambda: harness.rec.successes(ref("es"))))[-1]
    assert got.data == {
        "cert": b"\x00PEM",
        "raw": b"\xff\xfe",
        "user": b"app",
        "password": b"p@ss",
        "url": b"postgres://app:p%40ss@db/app",
    }
    assert got.versions["url"].startswith("template:")


async def test_a_template_reading_a_missing_key_keeps_the_last_values(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/json", SecretString=json.dumps(DOC))
    await harness.engine.upsert_store(store())
    spec: dict[str, Any] = {
        "dataFrom": [{"extract": {"key": "app/json", "property": "db"}}],
        "target": {"template": {"data": {"dsn": "{{ .user }}/{{ .missing }}"}}},
    }
    await harness.engine.upsert_external_secret(external_secret("es", spec))
    failure = (await harness.until(lambda: harness.rec.failures(ref("es"))))[-1]
    assert failure.reason == "InvalidProperty" and "'missing'" in failure.message
    assert harness.rec.successes(ref("es")) == []


async def test_created_once_is_not_fetched_again_on_a_spec_change(harness: Harness, sm: Any) -> None:
    sm.create_secret(Name="app/v", SecretString="first")
    await harness.engine.upsert_store(store())
    spec: dict[str, Any] = {
        "refreshPolicy": "CreatedOnce",
        "data": [{"secretKey": "V", "remoteRef": {"key": "app/v"}}],
    }
    await harness.engine.upsert_external_secret(external_secret("once", spec))
    await harness.until(lambda: harness.rec.successes(ref("once")))
    sm.put_secret_value(SecretId="app/v", SecretString="second")
    on_change = {**spec, "refreshPolicy": "OnChange"}
    await harness.engine.upsert_external_secret(external_secret("change", on_change))
    await harness.until(lambda: harness.rec.successes(ref("change")))
    calls = harness.aws.call_counts()["BatchGetSecretValue"]
    # A spec change: OnChange fetches again, CreatedOnce does not.
    changed = {**spec, "data": [{"secretKey": "W", "remoteRef": {"key": "app/v"}}]}
    await harness.engine.upsert_external_secret(external_secret("once", changed, generation=2))
    await harness.engine.upsert_external_secret(
        external_secret("change", {**changed, "refreshPolicy": "OnChange"}, generation=2)
    )
    await harness.until(lambda: len(harness.rec.successes(ref("change"))) >= 2)
    await harness.settle()
    assert harness.rec.successes(ref("change"))[-1].data == {"W": b"second"}
    assert len(harness.rec.successes(ref("once"))) == 1
    assert isinstance(harness.rec.last(ref("once")), SyncSuccess)
    assert harness.aws.call_counts()["BatchGetSecretValue"] == calls + 1


async def test_find_secrets_by_name_and_tags_lists_then_batch_reads(harness: Harness, sm: Any) -> None:
    for i in range(25):
        tags = [{"Key": "env", "Value": "prod" if i % 2 == 0 else "dev"}, {"Key": "team", "Value": "shop"}]
        sm.create_secret(Name=f"shop/s{i}", SecretString=f"v{i}", Tags=tags)
    sm.create_secret(Name="other/s0", SecretString="x", Tags=[{"Key": "env", "Value": "prod"}])
    sm.create_secret(
        Name="shop/mixed",
        SecretString="m",
        Tags=[{"Key": "env", "Value": "shop"}, {"Key": "team", "Value": "prod"}],
    )
    await harness.engine.upsert_store(store())
    harness.aws.reset_calls()
    spec: dict[str, Any] = {
        "dataFrom": [
            {"find": {"name": {"regexp": "^shop/s[0-9]+$"}, "tags": {"env": "prod"}}},
            {"find": {"path": "other/"}},
        ]
    }
    await harness.engine.upsert_external_secret(external_secret("found", spec))
    got = (await harness.until(lambda: harness.rec.successes(ref("found"))))[-1]
    want = {f"shop_s{i}": f"v{i}".encode() for i in range(0, 25, 2)} | {"s0": b"x"}
    assert got.data == want
    counts = harness.aws.call_counts()
    assert counts["ListSecrets"] == 2  # one listing per find (one page each)
    assert counts["BatchGetSecretValue"] == 2  # 13 secrets in one batch, 1 in another
    assert counts["GetSecretValue"] == 0
