"""Translate botocore failures into reasons and messages a user can act on.

AWS error messages are not copied into ours, nor are their words used to decide anything: only
the error code, the HTTP status, the key and what to check, so nothing an AWS endpoint echoes
back can leak into a status or log, and a reworded AWS message changes nothing. Failures to reach
AWS get one message whatever the connection error's type, so a flapping network does not rewrite
every status.
"""

from __future__ import annotations

import logging
import re

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from tmpfs_secrets.errors import Reason, SourceError, SyncError, traceback_text

log = logging.getLogger(__name__)

_ACCESS = (
    "AccessDenied",
    "UnrecognizedClient",
    "InvalidClientTokenId",
    "ExpiredToken",
    "InvalidSignature",
    "KMSAccessDenied",
    "AuthFailure",
    "SignatureDoesNotMatch",
)
_NOT_FOUND = (
    "ResourceNotFound",
    "ParameterNotFound",
    "InvalidParameters",
    "ParameterVersionNotFound",
    "ParameterVersionLabelNotFound",
)
_THROTTLED = (
    "Throttling",
    "TooManyRequests",
    "RequestLimitExceeded",
    "ThrottledException",
    "SlowDown",
    "RateExceeded",
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def status_of(exc: ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode") or 0)


def reason_of(exc: ClientError) -> Reason:
    """The reason of an AWS error by its code; an HTTP 403 whose code is unknown is AccessDenied."""
    reason = reason_for(error_code(exc))
    if reason is Reason.PROVIDER_ERROR and status_of(exc) == 403:
        return Reason.ACCESS_DENIED
    return reason


def reason_for(code: str) -> Reason:
    if code.startswith(_ACCESS):
        return Reason.ACCESS_DENIED
    if code.startswith(_NOT_FOUND):
        return Reason.SOURCE_NOT_FOUND
    if code.startswith(_THROTTLED):
        return Reason.THROTTLED
    return Reason.PROVIDER_ERROR


# botocore's parameter names, and the field of ours that fills each.
_FIELDS = {
    "SecretId": "remoteRef.key (or extract.key)",
    "SecretIdList": "remoteRef.key (or extract.key)",
    "VersionId": "remoteRef.version",
    "VersionStage": "remoteRef.version",
    "Names": "remoteRef.key and remoteRef.version",
    "Name": "remoteRef.key",
    "Path": "dataFrom.find.path",
    "RoleSessionName": "the store's name",
    "RoleArn": "spec.provider.aws.role",
    "ExternalId": "spec.provider.aws.externalID",
}
_PARAMETER = re.compile(r"parameter ([A-Za-z]+)")


def for_code(code: str, what: str, action: str, region: str, status: int = 0) -> SyncError:
    """The error for one key; `what` is like "secret prod/db", `action` the IAM action used."""
    reason = reason_for(code)
    if reason is Reason.PROVIDER_ERROR and status == 403:
        reason = Reason.ACCESS_DENIED
    if code == "InvalidRequestException" and action.startswith(
        ("secretsmanager:Get", "secretsmanager:Batch")
    ):
        # For a read, Secrets Manager answers this only for a secret scheduled for deletion.
        return SourceError(
            f"{what} is scheduled for deletion in {region} ({code}); restore it or change the key",
            Reason.SOURCE_NOT_FOUND,
        )
    kept = "retrying with backoff, the last good values stay in place"
    if reason is Reason.ACCESS_DENIED:
        msg = (
            f"AWS denied reading {what} ({code}); check that the store's IAM identity may call {action} "
            "on it (and kms:Decrypt on its key)"
        )
    elif reason is Reason.SOURCE_NOT_FOUND:
        msg = f"{what} does not exist in {region} ({code}); check the key, the version and the region"
    elif reason is Reason.THROTTLED:
        msg = f"AWS throttled reading {what} ({code}); {kept}"
    else:
        msg = f"AWS failed reading {what} ({code}); {kept}"
    return SourceError(msg, reason)


def from_exception(exc: Exception, what: str, action: str, region: str) -> SyncError:
    """Map any exception from a boto3 call; unknown exceptions become ProviderError."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if status_of(exc) == 429 and reason_for(code) is Reason.PROVIDER_ERROR:
            code = "TooManyRequests"  # botocore counts a 429 with an unknown code as throttling too
        err = for_code(code, what, action, region, status_of(exc))
        retry_hints(err, exc)
        return err
    if isinstance(exc, ParamValidationError):
        return SourceError(f"{invalid_request(exc)} for {what}", Reason.INVALID_SPEC)
    if isinstance(exc, NoCredentialsError):
        return SourceError(
            f"no AWS credentials were found for {what}; give the store auth or a role, or give the "
            "operator an identity (IRSA, EKS Pod Identity)",
            Reason.ACCESS_DENIED,
        )
    if isinstance(exc, BotoCoreError):
        return SourceError(
            f"could not reach AWS for {what} in {region}; check the network path and endpoint; "
            "retrying with backoff, the last good values stay in place",
            Reason.PROVIDER_ERROR,
        )
    # Not an AWS failure botocore describes: a bug. Its traceback goes to the log (without its
    # message, which could quote data); the status gets a generic line.
    log.error("reading %s failed unexpectedly:\n%s", what, traceback_text(exc))
    return SourceError(
        f"reading {what} failed ({type(exc).__name__}); retrying with backoff", Reason.PROVIDER_ERROR
    )


def invalid_request(exc: ParamValidationError) -> str:
    """Which of our fields made botocore refuse a request before sending it (never its value)."""
    report = str(exc.kwargs.get("report", ""))
    names = list(dict.fromkeys(_PARAMETER.findall(report)))
    fields = [_FIELDS.get(n, n) for n in names] or ["the key"]
    return (
        f"AWS would refuse the request, so it was not sent: check {', '.join(fields)} "
        "(length and allowed characters)"
    )


def retry_hints(err: SyncError, exc: ClientError) -> None:
    """Carry the SDK's view of the failed call over to the scheduler: how many HTTP attempts it
    made, and the service's `x-amz-retry-after` hint (milliseconds), which botocore honours too."""
    meta = exc.response.get("ResponseMetadata", {})
    retries = meta.get("RetryAttempts")
    err.attempts = 1 + retries if isinstance(retries, int) and retries > 0 else 1
    header = (meta.get("HTTPHeaders") or {}).get("x-amz-retry-after")
    try:
        hint = int(str(header)) / 1000.0 if header is not None else None
    except ValueError:
        hint = None
    err.retry_after = hint if hint is not None and hint >= 0 else None
