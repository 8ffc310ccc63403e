"""The providers under IAM enforcement (tests/cluster/aws_iam.py): a key the identity may not read
fails alone, with AccessDenied, and the keys sharing its call are still read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.cluster.aws_iam import ACCOUNT, REGION, IamMoto
from tmpfs_secrets.errors import Reason, SyncError
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import DefaultAuth
from tmpfs_secrets.providers.aws.parameterstore import ParameterStoreProvider
from tmpfs_secrets.providers.aws.secretsmanager import SecretsManagerProvider
from tmpfs_secrets.providers.base import Fetched, SourceRef

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/s{i}-??????" for i in (0, 2)],
        },
        {
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/p{i}" for i in (0, 2)],
        },
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IamMoto, dict[str, str]]]:
    aws = IamMoto(tmp_path_factory.mktemp("moto-iam") / "moto.log").start()
    try:
        sm, ssm = aws.client("secretsmanager"), aws.client("ssm")
        for i in range(3):
            sm.create_secret(Name=f"app/s{i}", SecretString=f"secret-{i}")
            ssm.put_parameter(Name=f"/app/p{i}", Value=f"parameter-{i}", Type="SecureString")
        keys = aws.user("reader", POLICY)
        aws.enforce()
        yield aws, aws.env_for(keys)
    finally:
        aws.stop()


@pytest.fixture
async def runtime(
    server: tuple[IamMoto, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    for key, value in server[1].items():
        monkeypatch.setenv(key, value)
    rt = AwsRuntime(threads=4)
    yield rt
    rt.close()


def _calls_since(aws: IamMoto, before: int) -> list[tuple[str, int, int, int]]:
    return [(c.operation, c.status, c.size, c.denied) for c in aws.calls()[before:]]


async def test_a_denied_secret_fails_alone_in_its_batch(
    server: tuple[IamMoto, dict[str, str]], runtime: AwsRuntime
) -> None:
    aws, _ = server
    before = len(aws.calls())
    out = await SecretsManagerProvider(runtime, DefaultAuth(), REGION).fetch(
        [SourceRef(f"app/s{i}") for i in range(3)]
    )
    read = [out[SourceRef(f"app/s{i}")] for i in (0, 2)]
    assert [r.value if isinstance(r, Fetched) else r for r in read] == [b"secret-0", b"secret-2"]
    denied = out[SourceRef("app/s1")]
    assert isinstance(denied, SyncError) and denied.reason is Reason.ACCESS_DENIED
    assert "app/s1" in denied.message and "secret-1" not in denied.message
    # One batch call; the denial came in its Errors, so there was no fallback to GetSecretValue.
    assert _calls_since(aws, before) == [("BatchGetSecretValue", 200, 3, 1)]


async def test_a_denied_parameter_fails_alone_though_iam_refuses_its_whole_call(
    server: tuple[IamMoto, dict[str, str]], runtime: AwsRuntime
) -> None:
    aws, _ = server
    before = len(aws.calls())
    out = await ParameterStoreProvider(runtime, DefaultAuth(), REGION).fetch(
        [SourceRef(f"/app/p{i}") for i in range(3)]
    )
    assert out[SourceRef("/app/p0")] == Fetched(b"parameter-0", "1")
    assert out[SourceRef("/app/p2")] == Fetched(b"parameter-2", "1")
    denied = out[SourceRef("/app/p1")]
    assert isinstance(denied, SyncError) and denied.reason is Reason.ACCESS_DENIED
    assert "/app/p1" in denied.message and "ssm:GetParameters" in denied.message
    assert _calls_since(aws, before) == [
        ("GetParameters", 400, 3, 0),  # refused as a whole
        ("GetParameters", 200, 1, 0),
        ("GetParameters", 400, 1, 0),
        ("GetParameters", 200, 1, 0),
    ]
