"""The exceptions that carry the operator's reasons (`vocabulary.Reason`, re-exported here).

Every failure the user can see (status condition, event) has a reason from `Reason` and a message
that says what to change. Messages name keys, paths and AWS error codes, never a value: the
exceptions here are raised and logged in many places, so they must be safe to print anywhere.
"""

from __future__ import annotations

import traceback

from tmpfs_secrets.vocabulary import Reason

__all__ = [
    "PropertyError",
    "Reason",
    "SourceError",
    "SpecError",
    "StoreError",
    "SyncError",
    "internal_error",
    "traceback_text",
]


class SyncError(Exception):
    """A failure with a reason and a user-facing message that never contains a value."""

    default_reason = Reason.PROVIDER_ERROR
    # What the SDK said about the call that failed, for the scheduler's backoff.
    retry_after: float | None = None  # the service's retry hint (x-amz-retry-after), in seconds
    attempts: int = 1  # HTTP attempts the SDK made (its own retries included)

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value}: {self.message})"


class SpecError(SyncError):
    """An invalid SecretStore/ClusterSecretStore/ExternalSecret spec."""

    default_reason = Reason.INVALID_SPEC


class StoreError(SyncError):
    """The store cannot be used (missing, not ready, not allowed)."""

    default_reason = Reason.STORE_NOT_READY


class SourceError(SyncError):
    """One remote key failed; other keys of the same call are unaffected."""


class PropertyError(SyncError):
    """A property, extract or find result cannot be turned into keys."""

    default_reason = Reason.INVALID_PROPERTY


def traceback_text(exc: BaseException) -> str:
    """The traceback of an unexpected exception, with the exception's type but not its message.

    Messages of exceptions we did not write (a codec error, a KeyError) can quote the data they
    choked on, which may be a secret value; the frames alone say where it happened.
    """
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 5:
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(
            f"Traceback (most recent call last):\n{frames}{type(current).__qualname__} (message withheld)"
        )
        current = current.__cause__ or current.__context__
    return "\n\nwhile handling the exception above, or caused by:\n".join(reversed(parts))


def internal_error(what: str) -> SyncError:
    """The status for an unexpected exception: generic, pointing at the log's traceback."""
    return SyncError(
        f"an unexpected error occurred while {what}; the operator's log has the details (no values); "
        "it is retried on the next refresh",
        Reason.INTERNAL_ERROR,
    )
