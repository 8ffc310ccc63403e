"""Events are queued, not posted on the sync's path: queueing one returns before any request, the
queue is posted in order, and what does not fit is dropped and counted, never blocking a sync."""

from __future__ import annotations

import asyncio

from kubernetes import client as k8s

from tests.cluster.control_plane import ControlPlane
from tmpfs_secrets import metrics
from tmpfs_secrets.kube.events import EventRecorder
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.rest import connect
from tmpfs_secrets.vocabulary import EXTERNAL_SECRET


def dropped(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("tmpfs_secrets_events_dropped_total", {"reason": reason}) or 0.0


def test_events_are_queued_posted_in_order_and_dropped_beyond_the_queue(
    control_plane: ControlPlane, namespace: str, api_client: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api_client)
    tracked = ObjectIndex().observe(
        EXTERNAL_SECRET.kind, {"metadata": {"name": "shop-db", "namespace": namespace, "uid": "u-1"}}
    )
    before = dropped("Synced")

    async def scenario() -> int:
        rest = await connect(str(control_plane.kubeconfig))
        recorder = EventRecorder(rest, queue_size=5, senders=1)
        try:
            for i in range(20):
                await recorder.normal(tracked, "Synced", f"message {i}")
            # Nothing was awaited on the way: no event can have been posted yet.
            posted_meanwhile = len(core.list_namespaced_event(namespace).items)
            await recorder.close()  # posts what is queued
            return posted_meanwhile
        finally:
            await rest.close()

    assert asyncio.run(scenario()) == 0
    events = sorted(core.list_namespaced_event(namespace).items, key=lambda e: e.metadata.creation_timestamp)
    assert sorted(e.message for e in events) == [f"message {i}" for i in range(5)]
    assert {(e.reason, e.type, e.involved_object.name) for e in events} == {("Synced", "Normal", "shop-db")}
    assert dropped("Synced") - before == 15
