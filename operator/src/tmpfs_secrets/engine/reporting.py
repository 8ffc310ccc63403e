"""Reporting: hand key sets and failures to the `Sink`, only when they differ from what was last
reported, and log sink trouble in one concise line (the sink reports details to the user)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tmpfs_secrets.engine.changes import already_delivered
from tmpfs_secrets.engine.keys import content_hash
from tmpfs_secrets.engine.state import ObjectState
from tmpfs_secrets.engine.stores import StoreKey
from tmpfs_secrets.errors import Reason, SyncError, traceback_text
from tmpfs_secrets.ports import ObjectRef, Sink, SinkError, SyncFailure, SyncSuccess

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self, sink: Sink, now: Callable[[], float], next_refresh: Callable[[ObjectRef], float | None]
    ):
        self._sink = sink
        self._now = now
        self._next_refresh = next_refresh

    async def deliver(
        self,
        ref: ObjectRef,
        state: ObjectState,
        generation: int,
        data: dict[str, bytes],
        versions: dict[str, str],
        healthy: bool,
    ) -> bool:
        """False if the sink refused the key set (it is offered again on the next evaluation)."""
        digest = content_hash(data)
        if already_delivered(state, digest, versions, generation, healthy):
            return True
        removed = state.delivered_keys - data.keys() if state.delivered_hash is not None else frozenset()
        result = SyncSuccess(
            data=dict(data),
            versions=dict(versions),
            content_hash=digest,
            sources=len(set(state.sources)),
            refresh_time=self._now(),
            next_refresh_time=self._next_refresh(ref),
            removed_keys=frozenset(removed),
        )
        try:
            await self._sink.synced(ref, result)
        except Exception as exc:
            # Not marked delivered, so the next refresh offers the key set again.
            _sink_trouble(state, "delivering", ref, exc)
            return False
        log.info("synced %s/%s: %d keys, %s", ref.namespace, ref.name, len(data), digest)
        state.delivered_hash, state.delivered_versions = digest, dict(versions)
        state.delivered_keys = frozenset(data)
        state.reported_generation = generation
        state.last_report = "synced"
        state.redeliver = False
        state.sink_trouble = None
        return True

    async def fail(self, ref: ObjectRef, state: ObjectState, error: SyncError, generation: int) -> None:
        key = (error.reason.value, error.message)
        if (
            state.last_report == "failed"
            and state.last_failure == key
            and state.reported_generation == generation
        ):
            return
        try:
            await self._sink.failed(
                ref, SyncFailure(error.reason.value, error.message, self._next_refresh(ref))
            )
        except Exception as exc:
            _sink_trouble(state, "reporting the failure of", ref, exc)
            return
        log.info("sync of %s/%s failed: %s: %s", ref.namespace, ref.name, error.reason.value, error.message)
        state.last_report, state.last_failure = "failed", key
        state.reported_generation = generation
        state.sink_trouble = None

    async def store_status(self, key: StoreKey, ready: bool, reason: Reason, message: str) -> None:
        try:
            await self._sink.store_status(key[0], key[1], key[2], ready, reason.value, message)
        except SinkError as exc:
            log.warning("reporting the status of store %s failed (%s)", key[2], _describe(exc))
        except Exception as exc:
            log.error(
                "reporting the status of store %s failed unexpectedly:\n%s", key[2], traceback_text(exc)
            )


def combine(errors: list[SyncError]) -> SyncError:
    """The first error's reason; the messages of up to three errors."""
    messages = list(dict.fromkeys(e.message for e in errors))
    text = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
    return SyncError(text, errors[0].reason)


def _describe(exc: Exception) -> str:
    """The exception's type and reason, never its message: a sink's message may quote a request."""
    reason = getattr(exc, "reason", None)
    return type(exc).__name__ + (f" {reason}" if isinstance(reason, str) and reason else "")


def _sink_trouble(state: ObjectState, action: str, ref: ObjectRef, exc: Exception) -> None:
    """One line per sink failure, at warning level only when it differs from the last one: a
    target that stays unwritable (owned by someone else, say) would otherwise log every interval.
    The sink reports the details to the object's status itself. A failure the sink did not
    declare (not a SinkError) is a bug: its traceback is logged, without its message."""
    cause = _describe(exc)
    level = logging.DEBUG if (action, cause) == state.sink_trouble else logging.WARNING
    state.sink_trouble = (action, cause)
    if not isinstance(exc, SinkError):
        log.error("%s %s/%s failed unexpectedly:\n%s", action, ref.namespace, ref.name, traceback_text(exc))
        return
    log.log(
        level, "%s %s/%s failed (%s); retried on the next refresh", action, ref.namespace, ref.name, cause
    )
