"""The IAM-enforcing moto of tests/cluster/aws_iam.py denies what AWS would deny and allows what AWS
would allow, for the reads the operator makes, with the ARNs `tmpfs-secrets iam-policy` prints.

These tests speak boto3 to the extended server directly: they are what makes the operator's
integration test under that server (tests/integration/test_iam_policy.py) mean something.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster.aws_iam import ACCOUNT, REGION, IamMoto, Keys
from tmpfs_secrets import iam

SECRETS = {
    "app/db": "db-value",
    "app/db2": "db2-value",  # a neighbour whose name starts like an allowed one
    "app/api": "api-value",
    "other/token": "token-value",
}
PARAMETERS = {
    "/app/host": "host-value",
    "/app/sub/port": "port-value",
    "/other/key": "key-value",
    "flag": "flag-value",
}


@dataclass
class World:
    aws: IamMoto
    arns: dict[str, str]  # secret name -> its full ARN
    reader: Keys  # the printed policy for app/db, app/api, the parameter flag and the path /app/
    no_batch: Keys  # GetSecretValue on app/db, not BatchGetSecretValue
    children_only: Keys  # GetParametersByPath on /app/* but not on /app itself
    nothing: Keys  # a user without any policy


def _printed_policy() -> dict[str, Any]:
    use = iam.Usage()
    for key in ("app/db", "app/api"):
        use.read(use.keys, ("SecretsManager", REGION, key), 60.0)
    use.read(use.keys, ("ParameterStore", REGION, "flag"), 60.0)
    use.read(use.paths, ("ParameterStore", REGION, "/app/"), 60.0)
    return iam.policy(use, account=ACCOUNT)


def _allow(action: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    aws = IamMoto(tmp_path_factory.mktemp("moto-iam") / "moto.log").start()
    try:
        sm, ssm = aws.client("secretsmanager"), aws.client("ssm")
        arns = {n: sm.create_secret(Name=n, SecretString=v)["ARN"] for n, v in SECRETS.items()}
        for name, value in PARAMETERS.items():
            ssm.put_parameter(Name=name, Value=value, Type="String")
        parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
        world = World(
            aws,
            arns,
            reader=aws.user("reader", _printed_policy()),
            no_batch=aws.user(
                "no-batch",
                _allow(
                    "secretsmanager:getsecretvalue",  # actions match whatever their case
                    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/db-??????",
                ),
            ),
            children_only=aws.user("children-only", _allow("ssm:GetParametersByPath", f"{parameter}/app/*")),
            nothing=aws.user("nothing", None),
        )
        aws.enforce()
        yield world
    finally:
        aws.stop()


def _denied(call: Any, **kwargs: Any) -> str:
    """The AccessDeniedException message of a call that must be refused."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    return str(error["Message"])


def test_enforcement_is_on(world: World) -> None:
    with pytest.raises(ClientError) as caught:  # the bootstrap key is no IAM user's
        world.aws.client("secretsmanager").get_secret_value(SecretId="app/db")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = _denied(world.aws.client("secretsmanager", world.nothing).get_secret_value, SecretId="app/db")
    assert "user/nothing" in message


def test_a_secret_is_read_only_where_the_printed_policy_names_it(world: World) -> None:
    sm = world.aws.client("secretsmanager", world.reader)
    db = world.arns["app/db"]
    assert db.rsplit("-", 1)[1] != "" and len(db.rsplit("-", 1)[1]) == 6  # the random suffix
    # By name, by full ARN and by partial ARN (no suffix): the same secret, the same ARN authorized.
    for secret_id in ("app/db", db, db.rsplit("-", 1)[0]):
        assert sm.get_secret_value(SecretId=secret_id)["SecretString"] == "db-value"
    assert sm.describe_secret(SecretId="app/api")["Name"] == "app/api"
    # The neighbour app/db2 is not matched by app/db-??????, nor is a secret of another path.
    for other in ("app/db2", "other/token"):
        message = _denied(sm.get_secret_value, SecretId=other)
        assert world.arns[other] in message and "secretsmanager:GetSecretValue" in message
    # A secret that doesn't exist is refused, not reported missing: its name has no suffix.
    message = _denied(sm.get_secret_value, SecretId="app/missing")
    assert "secret:app/missing because" in message


def test_batch_checks_get_secret_value_per_secret(world: World) -> None:
    sm = world.aws.client("secretsmanager", world.reader)
    answer = sm.batch_get_secret_value(
        SecretIdList=["app/db", "app/db2", world.arns["app/api"], "other/token"]
    )
    assert {v["Name"]: v["SecretString"] for v in answer["SecretValues"]} == {
        "app/db": "db-value",
        "app/api": "api-value",
    }
    errors = {e["SecretId"]: e for e in answer["Errors"]}
    assert set(errors) == {"app/db2", "other/token"}
    assert {e["ErrorCode"] for e in errors.values()} == {"AccessDeniedException"}
    assert world.arns["other/token"] in errors["other/token"]["Message"]
    text = json.dumps(answer, default=str)
    assert "db2-value" not in text and "token-value" not in text

    # GetSecretValue alone does not allow the batch call.
    only_get = world.aws.client("secretsmanager", world.no_batch)
    assert only_get.get_secret_value(SecretId="app/db")["SecretString"] == "db-value"
    message = _denied(only_get.batch_get_secret_value, SecretIdList=["app/db"])
    assert "secretsmanager:BatchGetSecretValue on resource: *" in message


def test_parameters_are_authorized_on_their_arn(world: World) -> None:
    ssm = world.aws.client("ssm", world.reader)
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
    # A name without a leading slash is parameter/<name>; a :version selector is not part of the ARN.
    assert ssm.get_parameter(Name="flag")["Parameter"]["Value"] == "flag-value"
    got = ssm.get_parameters(Names=["flag:1", "/app/host"])
    assert sorted(p["Value"] for p in got["Parameters"]) == ["flag-value", "host-value"]
    # One parameter the policy doesn't name denies the whole GetParameters call.
    message = _denied(ssm.get_parameters, Names=["flag", "/other/key"])
    assert f"ssm:GetParameters on resource: {parameter}/other/key" in message
    _denied(ssm.get_parameter, Name="/other/key")


def test_get_parameters_by_path_is_authorized_on_the_path(world: World) -> None:
    ssm = world.aws.client("ssm", world.reader)
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
    for path in ("/app", "/app/"):
        found = ssm.get_parameters_by_path(Path=path, Recursive=True)["Parameters"]
        assert {p["Name"]: p["Value"] for p in found} == {
            "/app/host": "host-value",
            "/app/sub/port": "port-value",
        }
    message = _denied(ssm.get_parameters_by_path, Path="/other", Recursive=True)
    assert f"ssm:GetParametersByPath on resource: {parameter}/other because" in message
    # The path itself is the resource: a policy naming only what is under it doesn't cover /app.
    children = world.aws.client("ssm", world.children_only)
    message = _denied(children.get_parameters_by_path, Path="/app", Recursive=True)
    assert f"on resource: {parameter}/app because" in message
    assert children.get_parameters_by_path(Path="/app/sub")["Parameters"][0]["Value"] == "port-value"


def test_the_log_counts_calls_without_values(world: World) -> None:
    sm = world.aws.client("secretsmanager", world.reader)
    before = len(world.aws.calls())
    sm.batch_get_secret_value(SecretIdList=["app/db", "app/api", "other/token"])
    (call,) = world.aws.calls()[before:]
    assert (call.operation, call.status, call.size, call.denied) == ("BatchGetSecretValue", 200, 3, 1)
    log = Path(world.aws.log).read_text()
    assert not any(value in log for value in [*SECRETS.values(), *PARAMETERS.values()])
