"""What the SDK says about a failed call reaches the scheduler: throttling, attempts, retry-after."""

from __future__ import annotations

from botocore.exceptions import ClientError

from tmpfs_secrets.cli import build_parser, settings_from
from tmpfs_secrets.engine import EngineSettings
from tmpfs_secrets.errors import Reason, SourceError
from tmpfs_secrets.providers.aws.errors import from_exception
from tmpfs_secrets.scheduler import CALL, KEY, THROTTLED
from tmpfs_secrets.scheduler.outcomes import outcome_of


def client_error(
    code: str, status: int, retries: int = 0, headers: dict[str, str] | None = None
) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "whatever the endpoint says"},
        "ResponseMetadata": {
            "HTTPStatusCode": status,
            "RetryAttempts": retries,
            "HTTPHeaders": headers or {},
        },
    }
    return ClientError(response, "BatchGetSecretValue")  # type: ignore[arg-type]


def test_throttling_carries_attempts_and_the_retry_after_hint() -> None:
    exc = client_error("ThrottlingException", 400, retries=1, headers={"x-amz-retry-after": "2500"})
    err = from_exception(exc, "secret app/x", "secretsmanager:BatchGetSecretValue", "us-east-1")
    assert err.reason is Reason.THROTTLED
    outcome = outcome_of(err)
    assert (outcome.ok, outcome.scope, outcome.attempts, outcome.retry_after) == (False, THROTTLED, 2, 2.5)


def test_a_429_with_an_unknown_code_is_throttling_and_a_bad_hint_is_ignored() -> None:
    exc = client_error("SomethingNew", 429, headers={"x-amz-retry-after": "soon"})
    err = from_exception(exc, "secret app/x", "secretsmanager:BatchGetSecretValue", "us-east-1")
    assert outcome_of(err).scope == THROTTLED and err.retry_after is None and err.attempts == 1


def test_scopes_of_other_failures() -> None:
    assert outcome_of(SourceError("gone", Reason.SOURCE_NOT_FOUND)).scope == KEY
    assert outcome_of(SourceError("denied", Reason.ACCESS_DENIED)).scope == KEY
    assert outcome_of(SourceError("unreachable", Reason.PROVIDER_ERROR)).scope == CALL


def test_backoff_cap_is_a_setting_with_a_ten_minute_default() -> None:
    parser = build_parser()
    assert EngineSettings.of(settings_from(parser.parse_args(["run"]))).backoff_cap == 600
    settings = settings_from(parser.parse_args(["run", "--backoff-cap", "120"]))
    assert EngineSettings.of(settings).backoff_cap == 120
