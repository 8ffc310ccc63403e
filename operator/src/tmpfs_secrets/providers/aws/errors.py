"""Translate botocore failures into reasons and messages a user can act on.

AWS error messages are not copied into ours: only the error code, the key and what to check,
so nothing an AWS endpoint echoes back can leak into a status or log.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from tmpfs_secrets.errors import Reason, SourceError, SyncError

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


def for_code(code: str, what: str, action: str, region: str, aws_message: str = "") -> SyncError:
    """The error for one key; `what` is like "secret prod/db", `action` the IAM action used."""
    reason = reason_for(code)
    if code == "InvalidRequestException" and "deletion" in aws_message:
        return SourceError(
            f"{what} is scheduled for deletion in {region}; restore it or change the key",
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
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return for_code(error_code(exc), what, action, region, message)
    if isinstance(exc, BotoCoreError):
        return SourceError(
            f"could not reach AWS for {what} in {region} ({type(exc).__name__}); check the network path and "
            "endpoint; retrying with backoff, the last good values stay in place",
            Reason.PROVIDER_ERROR,
        )
    return SourceError(
        f"reading {what} failed ({type(exc).__name__}); retrying with backoff", Reason.PROVIDER_ERROR
    )
