"""Operator start and stop: kopf's settings, the engine's lifetime, and the liveness probe.

kopf's defaults would write to every object it handles: Kubernetes Events for each handler
outcome, and progress records in `status.kopf` (pruned by our structural schema, which makes kopf
retry forever). Here kopf keeps its progress in annotations under its own prefix (written only
while a handler is retrying) and posts no events; the operator posts its own (Synced, Rotated,
SyncFailed). ExternalSecrets are not kopf's at all (the operator's own watch, started here, hands
their events to `handlers.objects`), so kopf writes nothing to them; stores (few) keep kopf's
last-handled-configuration annotation, written once per spec change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from tmpfs_secrets import metrics
from tmpfs_secrets.handlers.objects import external_secret_event
from tmpfs_secrets.handlers.registry import registry
from tmpfs_secrets.handlers.state import Runtime, runtime
from tmpfs_secrets.handlers.targets import repair
from tmpfs_secrets.kube.rest import LIST_PAGE

log = logging.getLogger(__name__)

# Not "tmpfs-secrets.io": kopf hides annotations under its own prefix from its change detection,
# and the refresh-requested annotation lives there.
KOPF_PREFIX = "kopf.tmpfs-secrets.io"
WORKER_LIMIT = 64  # concurrent per-object kopf tasks, per watched kind (stores, namespaces)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    # A lost watch connection is re-established quickly rather than after kopf's longer default.
    settings.watching.reconnect_backoff = 1.0
    # Handlers only hand work to the engine; a retry after a transient failure should be quick.
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    # kopf starts a task per object with events and keeps it for `idle_timeout` after its last
    # event; thousands of namespaces at once would cost tens of MiB. A few at a time, let go
    # quickly, keep up as well: the handlers only hand work to the engine.
    settings.queueing.worker_limit = WORKER_LIMIT
    # kopf's startup LIST in pages, as the operator's own LISTs are: one page parsed at a time.
    settings.watching.chunk_size = LIST_PAGE
    settings.queueing.idle_timeout = 0.5


@kopf.on.startup(registry=registry)
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    configure_kopf(settings)
    rt = runtime(memo)
    # Every replica keeps the target Secrets' watch (its index says what a write would change);
    # only the leader repairs Secrets someone else changed: a follower sees the leader's writes.
    rt.kube.target_watch.start(
        lambda namespace, name, what: repair(rt, namespace, name, what) if rt.following.leading else None
    )
    register_gauges(rt)
    if rt.elector is None:
        await rt.engine.start()
        if rt.direct is not None:
            await rt.direct.start()  # with an election, on takeover (handlers/leader.py)
    # Last: an ExternalSecret's first event finds the engine started (or, with an election, the
    # replica following).
    rt.kube.external_secret_watch.start(lambda type, body: external_secret_event(rt, type, body))
    scope = ", ".join(rt.settings.namespaces) if rt.settings.namespaces else "all namespaces"
    log.info("tmpfs-secrets operator started; watching %s", scope)


@kopf.on.cleanup(registry=registry)
async def stop(memo: Any, **_: Any) -> None:
    rt = runtime(memo)
    try:
        # First, so no ExternalSecret event reaches an engine that is stopping.
        await rt.kube.external_secret_watch.stop()
        if rt.election is not None:
            rt.election.cancel()
            await asyncio.gather(rt.election, return_exceptions=True)
        if rt.direct is not None:
            await rt.direct.stop()
        await rt.engine.stop()
        if rt.leader_pod is not None and rt.elector is not None and rt.elector.leading:
            await rt.leader_pod.mark(False)
        if rt.elector is not None:
            # After the engine stopped: the next leader never overlaps with this one's writes.
            await rt.elector.release()
    finally:
        await rt.kube.close()
    log.info("tmpfs-secrets operator stopped")


@kopf.on.probe(id="engine", registry=registry)
async def engine_alive(memo: Any, **_: Any) -> dict[str, Any]:
    """kopf's own liveness endpoint (`--liveness`): the refresh loop's state, for people reading it.

    `--health-address` serves the probe kubelet should use: it answers 503 when the loop is down.
    """
    rt = runtime(memo)
    problem = rt.engine.health(rt.settings.stuck_after)
    return {"ok": problem is None, "problem": problem}


def register_gauges(rt: Runtime) -> None:
    """The metrics read when scraped: ExternalSecrets by Ready reason, refresh lag, leadership."""
    metrics.gauge(
        "tmpfs_secrets_external_secrets",
        "ExternalSecrets by their Ready condition's status and reason.",
        ("ready", "reason"),
        lambda: [({"ready": r, "reason": why}, n) for (r, why), n in rt.kube.index.ready_counts().items()],
    )
    metrics.gauge(
        "tmpfs_secrets_refresh_lag_seconds",
        "Now minus the oldest due time of a source whose refresh has not started (0 on a follower).",
        (),
        lambda: [({}, rt.engine.refresh_lag() if rt.following.leading else 0.0)],
    )
    metrics.gauge(
        "tmpfs_secrets_leader",
        "1 while this replica leads (refreshes and writes); 0 while it follows.",
        (),
        lambda: [({}, 1.0 if rt.following.leading else 0.0)],
    )
