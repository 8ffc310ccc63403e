"""The fixed set of reasons the operator reports, and the exceptions that carry them.

Every failure the user can see (status condition, event) has a reason from `Reason` and a message
that says what to change. Messages name keys, paths and AWS error codes, never a value: the
exceptions here are raised and logged in many places, so they must be safe to print anywhere.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Condition reasons; docs/engine.md says what each one means to a user."""

    SYNCED = "Synced"  # ExternalSecret: every key delivered
    VALID = "Valid"  # store: spec and auth inputs are usable
    STORE_NOT_FOUND = "StoreNotFound"  # the referenced store does not exist
    STORE_NOT_READY = "StoreNotReady"  # the store exists but its auth cannot be built
    STORE_NOT_ALLOWED = "StoreNotAllowed"  # a ClusterSecretStore whose conditions exclude the namespace
    ACCESS_DENIED = "AccessDenied"  # AWS refused the store's identity
    SOURCE_NOT_FOUND = "SourceNotFound"  # the secret, parameter or version does not exist
    INVALID_PROPERTY = "InvalidProperty"  # property/extract/find cannot be applied to the value
    INVALID_SPEC = "InvalidSpec"  # the object's spec is invalid
    THROTTLED = "Throttled"  # AWS throttled the operator; it backs off and retries
    PROVIDER_ERROR = "ProviderError"  # AWS unreachable or another AWS error
    # The target Secret (reported by the Kubernetes side; the engine never sees the target):
    TARGET_NOT_FOUND = "TargetNotFound"  # creationPolicy Merge and the Secret does not exist
    TARGET_CONFLICT = "TargetConflict"  # the Secret exists but is not this ExternalSecret's, or immutable
    TARGET_WRITE_FAILED = "TargetWriteFailed"  # RBAC or API server errors while writing it
    DELIVERY_NOT_AVAILABLE = "DeliveryNotAvailable"  # target.delivery Direct: not implemented yet


class SyncError(Exception):
    """A failure with a reason and a user-facing message that never contains a value."""

    default_reason = Reason.PROVIDER_ERROR

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
