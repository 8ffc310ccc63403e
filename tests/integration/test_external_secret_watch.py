"""The ExternalSecrets' own watch against the real API server: the LIST is read no faster than it is
handled (at most `limit` bodies wait), each object's events arrive in order and without
managedFields, and what the index holds but a LIST does not is reported deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.cluster.control_plane import ControlPlane
from tmpfs_secrets.kube.external_secret_watch import ExternalSecretWatch
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.rest import JSON, connect
from tmpfs_secrets.vocabulary import EXTERNAL_SECRET

GROUP, VERSION, PLURAL = "tmpfs-secrets.io", "v1alpha1", "externalsecrets"


def _external_secret(name: str) -> JSON:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalSecret",
        "metadata": {"name": name},
        "spec": {"secretStoreRef": {"name": "aws"}, "data": [{"secretKey": "A", "remoteRef": {"key": "k"}}]},
    }


def test_the_list_waits_for_the_handler_and_events_arrive_in_order(
    control_plane: ControlPlane, crds: Path, namespace: str, api_client: k8s.ApiClient
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    for i in range(12):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _external_secret(f"es-{i}"))

    async def scenario() -> tuple[int, list[tuple[str | None, str, dict[str, Any]]]]:
        rest = await connect(str(control_plane.operator_kubeconfig()))
        index = ObjectIndex()
        watch = ExternalSecretWatch(rest, index, [namespace], workers=2, limit=4)
        seen = Seen()
        release = asyncio.Event()

        async def handle(kind: str | None, body: JSON) -> None:
            await release.wait()
            await seen.add((kind, body["metadata"]["name"], body))
            if kind != "DELETED":
                index.observe(EXTERNAL_SECRET.kind, body)

        try:
            watch.start(handle)
            await asyncio.sleep(1.0)  # the LIST has long arrived; the handler holds everything
            queue = watch._queue
            assert queue is not None
            held = queue.pending
            release.set()
            await seen.until(lambda: len(seen) == 12)
            # Changes after the LIST come through the WATCH, in order for one object.
            for step in ("1", "2"):
                patch = {"metadata": {"labels": {"step": step}}}
                await asyncio.to_thread(
                    custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, "es-3", patch
                )
            await asyncio.to_thread(
                custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, "es-3"
            )
            await seen.until(lambda: any(kind == "DELETED" for kind, _, _ in seen))
            await watch.drained()
            return held, seen
        finally:
            await watch.stop()
            await rest.close()

    held, seen = asyncio.run(scenario())
    assert held == 4  # the other 8 listed bodies waited in their page, not in a queue
    assert sorted(name for kind, name, _ in seen if kind is None) == sorted(f"es-{i}" for i in range(12))
    later = [(kind, (body["metadata"].get("labels") or {}).get("step")) for kind, name, body in seen[12:]]
    assert later == [("MODIFIED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]
    assert all("managedFields" not in body["metadata"] for _, _, body in seen)


def test_what_the_index_holds_and_the_list_does_not_is_reported_deleted(
    control_plane: ControlPlane, crds: Path, namespace: str, api_client: k8s.ApiClient
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    alive = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _external_secret("alive")
    )
    gone = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _external_secret("gone"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")

    async def scenario() -> list[tuple[str | None, str]]:
        rest = await connect(str(control_plane.operator_kubeconfig()))
        index = ObjectIndex()
        # As after a watch that fell behind: the index still holds one deleted meanwhile.
        index.observe(EXTERNAL_SECRET.kind, alive)
        index.observe(EXTERNAL_SECRET.kind, gone)
        watch = ExternalSecretWatch(rest, index, [namespace])
        seen = Seen()

        async def handle(kind: str | None, body: JSON) -> None:
            await seen.add((kind, body["metadata"]["name"]))

        try:
            watch.start(handle)
            await seen.until(lambda: len(seen) == 2)
            # And the WATCH goes on from the LIST's version.
            await asyncio.to_thread(
                custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                _external_secret("later"),
            )
            await seen.until(lambda: len(seen) == 3)
            return seen
        finally:
            await watch.stop()
            await rest.close()

    assert asyncio.run(scenario()) == [(None, "alive"), ("DELETED", "gone"), ("ADDED", "later")]


class Seen(list[Any]):
    """What the handler was given, with a wait for a condition on it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Condition()

    async def add(self, item: Any) -> None:
        async with self.changed:
            self.append(item)
            self.changed.notify_all()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(20), self.changed:
            await self.changed.wait_for(condition)
