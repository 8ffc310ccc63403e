"""AWS failures become reasons that do not depend on AWS's wording, and stable messages."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from tmpfs_secrets.errors import Reason
from tmpfs_secrets.providers.aws.errors import from_exception

GET = "secretsmanager:GetSecretValue"


def client_error(code: str | None, status: int, message: str = "whatever AWS says") -> ClientError:
    error: dict[str, Any] = {"Message": message}
    if code is not None:
        error["Code"] = code
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetSecretValue")


@pytest.mark.parametrize(
    "message",
    [
        "You can't perform this operation on the secret because it was marked for deletion.",
        "Das Geheimnis ist zur Löschung vorgemerkt.",
        "",
    ],
)
def test_a_secret_scheduled_for_deletion_is_source_not_found_whatever_the_words(message: str) -> None:
    err = from_exception(
        client_error("InvalidRequestException", 400, message), "secret app/db", GET, "us-east-1"
    )
    assert err.reason is Reason.SOURCE_NOT_FOUND and "scheduled for deletion" in err.message
    assert message[:10] not in err.message or not message


def test_a_403_without_an_error_code_is_access_denied() -> None:
    err = from_exception(client_error(None, 403), "secret app/db", GET, "us-east-1")
    assert err.reason is Reason.ACCESS_DENIED
    assert from_exception(client_error(None, 500), "secret app/db", GET, "us-east-1").reason is (
        Reason.PROVIDER_ERROR
    )


def test_a_request_botocore_refuses_is_invalid_spec_naming_the_field() -> None:
    sts = boto3.session.Session().client(
        "sts", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    with pytest.raises(ParamValidationError) as raised:  # refused before anything is sent
        sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/r", RoleSessionName="a", ExternalId="x")
    err = from_exception(raised.value, "credentials for the store", "sts:AssumeRole", "us-east-1")
    assert err.reason is Reason.INVALID_SPEC
    assert "spec.provider.aws.externalID" in err.message and "the store's name" in err.message
    assert "network" not in err.message


def test_a_network_outage_has_one_message_whatever_the_error_type() -> None:
    url = "https://secretsmanager.us-east-1.amazonaws.com/"
    errors = [
        EndpointConnectionError(endpoint_url=url),
        ConnectionClosedError(endpoint_url=url),
        ReadTimeoutError(endpoint_url=url),
        ConnectTimeoutError(endpoint_url=url),
    ]
    results = {from_exception(e, "secret app/db", GET, "us-east-1") for e in errors}
    assert len({(r.reason, r.message) for r in results}) == 1
    (only,) = {r.message for r in results}
    assert "could not reach AWS" in only
