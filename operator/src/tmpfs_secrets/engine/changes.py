"""Change detection: whether an event needs a new resolution, and whether a key set differs from
what was last delivered (an unchanged refresh reports nothing)."""

from __future__ import annotations

import dataclasses

from tmpfs_secrets.api.external_secret import ExternalSecretSpec
from tmpfs_secrets.engine.state import ObjectState


def essence(spec: ExternalSecretSpec) -> ExternalSecretSpec:
    """What a change of needs a new resolution (annotations and status do not)."""
    return dataclasses.replace(spec, refresh_request=None, synced_before=False)


def spec_changed(old: ExternalSecretSpec, new: ExternalSecretSpec) -> bool:
    return essence(old) != essence(new) or old.generation != new.generation


def refresh_requested(old: ExternalSecretSpec, new: ExternalSecretSpec) -> bool:
    return new.refresh_request is not None and new.refresh_request != old.refresh_request


def already_delivered(
    state: ObjectState, digest: str, versions: dict[str, str], generation: int, healthy: bool
) -> bool:
    """True if this key set needs no sink call."""
    return (
        digest == state.delivered_hash
        and versions == state.delivered_versions
        and state.reported_generation == generation
        and (state.last_report == "synced" or not healthy)
        # A refresh request re-delivers, but not the last good values of a failing refresh:
        # that would flip the status to Synced and back to the failure.
        and not (state.redeliver and healthy)
    )
