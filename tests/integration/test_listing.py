"""LISTs in pages against the real API server, and the startup LIST that tells when the index is
complete: repeated only when the watch stops delivering what it named, not while it is busy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kubernetes import client as k8s

from tests.cluster.control_plane import ControlPlane
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.listing import await_existing
from tmpfs_secrets.kube.rest import JSON, connect, core_path
from tmpfs_secrets.vocabulary import EXTERNAL_SECRET


def _external_secret(name: str) -> JSON:
    return {
        "apiVersion": "tmpfs-secrets.io/v1alpha1",
        "kind": "ExternalSecret",
        "metadata": {"name": name},
        "spec": {"secretStoreRef": {"name": "aws"}, "data": [{"secretKey": "A", "remoteRef": {"key": "k"}}]},
    }


def test_list_pages_returns_every_item_once_in_pages_and_metadata_only_on_request(
    control_plane: ControlPlane, namespace: str, api_client: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api_client)
    for i in range(5):
        core.create_namespaced_config_map(
            namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"cm-{i}"), data={"x": f"payload-{i}"})
        )

    async def pages(metadata_only: bool) -> list[tuple[list[JSON], str]]:
        rest = await connect(str(control_plane.kubeconfig))
        try:
            path = core_path("configmaps", namespace)
            return [page async for page in rest.list_pages(path, limit=2, metadata_only=metadata_only)]
        finally:
            await rest.close()

    full = asyncio.run(pages(False))
    # Five configmaps, and kube-root-ca.crt once kube-controller-manager has published it.
    assert len(full) >= 3 and all(len(items) <= 2 for items, _ in full)
    assert len({version for _, version in full}) == 1  # one snapshot across the pages
    names = sorted(item["metadata"]["name"] for items, _ in full for item in items)
    assert len(names) == len(set(names))
    assert [n for n in names if n.startswith("cm-")] == [f"cm-{i}" for i in range(5)]
    assert any(item.get("data") == {"x": "payload-0"} for items, _ in full for item in items)

    slim = asyncio.run(pages(True))
    assert sorted(item["metadata"]["name"] for items, _ in slim for item in items) == names
    assert "payload-0" not in json.dumps(slim)


def test_startup_list_is_repeated_only_when_the_watch_stalls(
    control_plane: ControlPlane, crds: Path, namespace: str, api_client: k8s.ApiClient
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    names = [f"es-{i}" for i in range(8)]
    bodies = [
        custom.create_namespaced_custom_object(
            "tmpfs-secrets.io", "v1alpha1", namespace, "externalsecrets", _external_secret(name)
        )
        for name in names
    ]

    def lists_of_external_secrets(since: int) -> int:
        return sum(
            1
            for r in control_plane.operator_requests(since)
            if r["verb"] == "list" and r["resource"] == "externalsecrets" and r["namespace"] == namespace
        )

    async def scenario() -> tuple[int, int, int]:
        rest = await connect(str(control_plane.operator_kubeconfig()))
        index = ObjectIndex()
        try:
            since = control_plane.audit_offset()
            task = asyncio.create_task(await_existing(rest, index, [namespace], every=0.5))
            # The watch delivers one object every 0.3 s for 2.1 s: progress within every wait.
            for body in bodies[:7]:
                await asyncio.sleep(0.3)
                index.observe(EXTERNAL_SECRET.kind, body)
            busy = lists_of_external_secrets(since)
            # Then nothing for 1.6 s (the last one is late): the LIST is repeated.
            await asyncio.sleep(1.6)
            stalled = lists_of_external_secrets(since)
            index.observe(EXTERNAL_SECRET.kind, bodies[7])
            await asyncio.wait_for(task, 10)
            await asyncio.sleep(1.0)
            return busy, stalled, lists_of_external_secrets(since)
        finally:
            await rest.close()

    busy, stalled, total = asyncio.run(scenario())
    assert busy == 1  # the startup LIST only, however long the watch took
    assert stalled >= 2  # LISTed again once nothing arrived for longer than `every`
    assert total == stalled  # and never again once complete
