"""Providers against moto over HTTP: batching, fallbacks, versions, per-key errors, credentials."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.cluster.aws import Fault, MotoServer
from tmpfs_secrets.errors import Reason, SyncError
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import (
    AssumeRoleAuth,
    DefaultAuth,
    StaticAuth,
    WebIdentityAuth,
    session_name,
)
from tmpfs_secrets.providers.aws.parameterstore import ParameterStoreProvider
from tmpfs_secrets.providers.aws.secretsmanager import SecretsManagerProvider
from tmpfs_secrets.providers.base import Fetched, SourceRef

REGION = "us-east-1"
ROLE = "arn:aws:iam::111122223333:role/shop-secrets"


@pytest.fixture
async def runtime() -> Any:
    rt = AwsRuntime(threads=4)
    yield rt
    rt.close()


def sm_provider(rt: AwsRuntime) -> SecretsManagerProvider:
    return SecretsManagerProvider(rt, DefaultAuth(), REGION)


async def test_secrets_manager_batches_20_ids_per_call(aws: MotoServer, sm: Any, runtime: AwsRuntime) -> None:
    for i in range(45):
        sm.create_secret(Name=f"app/s{i}", SecretString=f"value-{i}")
    aws.reset_calls()
    refs = [SourceRef(f"app/s{i}") for i in range(45)]
    out = await sm_provider(runtime).fetch(refs)
    assert aws.call_counts()["BatchGetSecretValue"] == 3
    assert aws.call_counts()["GetSecretValue"] == 0
    assert {r.key: v.value for r, v in out.items() if isinstance(v, Fetched)} == {
        f"app/s{i}": f"value-{i}".encode() for i in range(45)
    }


async def test_a_missing_secret_fails_alone(aws: MotoServer, sm: Any, runtime: AwsRuntime) -> None:
    sm.create_secret(Name="app/present", SecretString="p")
    arn = sm.create_secret(Name="app/by-arn", SecretString="a")["ARN"]
    out = await sm_provider(runtime).fetch(
        [SourceRef("app/present"), SourceRef("app/missing"), SourceRef(arn)]
    )
    assert isinstance(out[SourceRef("app/present")], Fetched)
    assert isinstance(out[SourceRef(arn)], Fetched)
    missing = out[SourceRef("app/missing")]
    assert isinstance(missing, SyncError) and missing.reason is Reason.SOURCE_NOT_FOUND
    assert "app/missing" in missing.message


async def test_batch_access_denied_falls_back_to_get_secret_value(
    aws: MotoServer, sm: Any, runtime: AwsRuntime
) -> None:
    for i in range(5):
        sm.create_secret(Name=f"app/s{i}", SecretString=f"value-{i}")
    aws.reset_calls()
    aws.inject(Fault("BatchGetSecretValue", code="AccessDeniedException", message="denied"))
    provider = sm_provider(runtime)
    out = await provider.fetch([SourceRef(f"app/s{i}") for i in range(5)])
    assert all(isinstance(v, Fetched) for v in out.values())
    assert aws.call_counts()["GetSecretValue"] == 5
    assert aws.call_counts()["BatchGetSecretValue"] == 0  # the fault answered it; moto never saw it
    # remembered: the next refresh does not try the batch call again
    aws.clear_faults()
    await provider.fetch([SourceRef("app/s0")])
    assert aws.call_counts()["BatchGetSecretValue"] == 0 and aws.call_counts()["GetSecretValue"] == 6


async def test_versions_stages_and_binary(aws: MotoServer, sm: Any, runtime: AwsRuntime) -> None:
    first = sm.create_secret(Name="app/rot", SecretString="v1")["VersionId"]
    second = sm.put_secret_value(SecretId="app/rot", SecretString="v2")["VersionId"]
    sm.create_secret(Name="app/bin", SecretBinary=b"\x00\xffbinary")
    aws.reset_calls()
    refs = [
        SourceRef("app/rot"),
        SourceRef("app/rot", "AWSCURRENT"),
        SourceRef("app/rot", "AWSPREVIOUS"),
        SourceRef("app/rot", first),
        SourceRef("app/rot", f"uuid/{first}"),
        SourceRef("app/bin"),
    ]
    out = await sm_provider(runtime).fetch(refs)
    values = {r: (v.value, v.version, v.binary) for r, v in out.items() if isinstance(v, Fetched)}
    assert values[SourceRef("app/rot")] == (b"v2", second, False)
    assert values[SourceRef("app/rot", "AWSCURRENT")] == (b"v2", second, False)
    assert values[SourceRef("app/rot", "AWSPREVIOUS")] == (b"v1", first, False)
    assert values[SourceRef("app/rot", first)] == (b"v1", first, False)
    assert values[SourceRef("app/rot", f"uuid/{first}")] == (b"v1", first, False)
    assert values[SourceRef("app/bin")][0] == b"\x00\xffbinary" and values[SourceRef("app/bin")][2]
    assert aws.call_counts()["BatchGetSecretValue"] == 1
    assert aws.call_counts()["GetSecretValue"] == 3


async def test_throttling_is_reported_per_key_without_values(
    aws: MotoServer, sm: Any, runtime: AwsRuntime
) -> None:
    sm.create_secret(Name="app/t", SecretString="very-secret-throttle-value")
    provider = sm_provider(runtime)
    # One throttled answer is absorbed by botocore's single retry...
    aws.inject(Fault("BatchGetSecretValue", code="ThrottlingException", remaining=1))
    assert isinstance((await provider.fetch([SourceRef("app/t")]))[SourceRef("app/t")], Fetched)
    # ...two are not (max_attempts=2): the key fails as Throttled and the scheduler backs off.
    aws.inject(Fault("BatchGetSecretValue", code="ThrottlingException", remaining=2))
    err = (await provider.fetch([SourceRef("app/t")]))[SourceRef("app/t")]
    assert aws.layer is not None and not aws.layer.faults  # exactly two attempts used both faults
    assert isinstance(err, SyncError) and err.reason is Reason.THROTTLED
    assert "very-secret" not in err.message and "very-secret" not in repr(err)


async def test_parameter_store_batches_10_names_per_call(
    aws: MotoServer, ssm: Any, runtime: AwsRuntime
) -> None:
    for i in range(25):
        ssm.put_parameter(Name=f"/app/p{i}", Value=f"value-{i}", Type="SecureString")
    aws.reset_calls()
    provider = ParameterStoreProvider(runtime, DefaultAuth(), REGION)
    out = await provider.fetch([SourceRef(f"/app/p{i}") for i in range(25)] + [SourceRef("/app/none")])
    assert aws.call_counts()["GetParameters"] == 3
    assert out[SourceRef("/app/p7")] == Fetched(b"value-7", "1")  # SecureString decrypted
    missing = out[SourceRef("/app/none")]
    assert isinstance(missing, SyncError) and missing.reason is Reason.SOURCE_NOT_FOUND


async def test_parameter_versions_labels_and_string_lists(
    aws: MotoServer, ssm: Any, runtime: AwsRuntime
) -> None:
    ssm.put_parameter(Name="/app/v", Value="one", Type="String")
    ssm.put_parameter(Name="/app/v", Value="two", Type="String", Overwrite=True)
    ssm.label_parameter_version(Name="/app/v", ParameterVersion=1, Labels=["stable"])
    ssm.put_parameter(Name="/app/list", Value="a,b,c", Type="StringList")
    provider = ParameterStoreProvider(runtime, DefaultAuth(), REGION)
    out = await provider.fetch(
        [
            SourceRef("/app/v"),
            SourceRef("/app/v", "1"),
            SourceRef("/app/v", "stable"),
            SourceRef("/app/list"),
            SourceRef("/app/v", "9"),
        ]
    )
    assert out[SourceRef("/app/v")] == Fetched(b"two", "2")
    assert out[SourceRef("/app/v", "1")] == Fetched(b"one", "1")
    assert out[SourceRef("/app/v", "stable")] == Fetched(b"one", "1")
    assert out[SourceRef("/app/list")] == Fetched(b"a,b,c", "1")
    assert isinstance(out[SourceRef("/app/v", "9")], SyncError)


async def test_find_by_path_follows_pagination(aws: MotoServer, ssm: Any, runtime: AwsRuntime) -> None:
    for i in range(23):
        ssm.put_parameter(Name=f"/shop/prod/k{i}", Value=f"v{i}", Type="SecureString")
    ssm.put_parameter(Name="/shop/prod/db/host", Value="db.local", Type="String")
    ssm.put_parameter(Name="/shop/other", Value="x", Type="String")
    aws.reset_calls()
    found = await ParameterStoreProvider(runtime, DefaultAuth(), REGION).find("/shop/prod/")
    assert len(found.parameters) == 24
    assert found.parameters["/shop/prod/db/host"].value == b"db.local"
    assert found.parameters["/shop/prod/k3"].value == b"v3"
    assert aws.call_counts()["GetParametersByPath"] >= 3  # moto pages 10 at a time


async def caller_arn(rt: AwsRuntime, auth: Any) -> str:
    creds = await rt.credentials(auth)
    assert creds is not None
    sts = boto3.client(
        "sts",
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
    )
    return str(sts.get_caller_identity()["Arn"])


async def test_assume_role_names_the_session_after_the_store(aws: MotoServer, runtime: AwsRuntime) -> None:
    auth = AssumeRoleAuth(DefaultAuth(), ROLE, "shop-ext", session_name("SecretStore", "shop", "aws"), REGION)
    arn = await caller_arn(runtime, auth)
    assert arn.endswith("assumed-role/shop-secrets/shop.aws")
    # cached: no second AssumeRole until shortly before expiry
    await runtime.credentials(auth)
    assert aws.call_counts()["AssumeRole"] == 1
    assert auth.identity != DefaultAuth().identity


async def test_web_identity_uses_the_service_account_token(aws: MotoServer, runtime: AwsRuntime) -> None:
    tokens = []

    async def token() -> str:
        tokens.append(1)
        return "header.payload.signature"

    auth = WebIdentityAuth("shop", "reader", ROLE, "shop.aws", token)
    arn = await caller_arn(runtime, auth)
    assert arn.endswith("assumed-role/shop-secrets/shop.aws")
    assert aws.call_counts()["AssumeRoleWithWebIdentity"] == 1 and tokens == [1]


async def test_static_keys_are_used_and_identity_separates_tenants(
    aws: MotoServer, runtime: AwsRuntime
) -> None:
    async def secret() -> str:
        return "static-secret-access-key"

    a = StaticAuth("shop", "keys", "AKIAEXAMPLEA", secret)
    b = StaticAuth("other", "keys", "AKIAEXAMPLEB", secret)
    creds = await runtime.credentials(a)
    assert creds is not None and creds.access_key_id == "AKIAEXAMPLEA"
    assert "static-secret-access-key" not in repr(creds)
    assert a.identity != b.identity
