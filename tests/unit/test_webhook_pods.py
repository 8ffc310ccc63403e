"""The pod webhook's decisions, as pure functions of a pod and the index's targets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tmpfs_secrets.kube.index import Target
from tmpfs_secrets.webhook.pods import mutate, volume_name

NS = "shop"
TARGETS = {
    "shop-db": Target(
        name="shop-db", mount_path="/var/run/secrets/tmpfs-secrets.io/shop-db", default_mode=0o440
    ),
    "shop-api": Target(name="api-secret", mount_path="/secrets/api", default_mode=0o400),
    "direct": Target(name="direct", delivery="Direct", mount_path="/secrets/direct"),
    "proc": Target(name="proc", mount_path="/proc/secrets"),
    "same-path": Target(name="same-path", mount_path="/secrets/api"),
}


def lookup(namespace: str, name: str) -> Target | None:
    assert namespace == NS
    return TARGETS.get(name)


def pod(secrets: str | None = "shop-db", containers: str | None = None, **spec: Any) -> dict[str, Any]:
    annotations = {}
    if secrets is not None:
        annotations["tmpfs-secrets.io/secrets"] = secrets
    if containers is not None:
        annotations["tmpfs-secrets.io/containers"] = containers
    body: dict[str, Any] = {
        "metadata": {"labels": {"tmpfs-secrets.io/inject": "true"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "x"}, {"name": "sidecar", "image": "x"}]},
    }
    body["spec"].update(spec)
    return body


def apply_patch(doc: dict[str, Any], ops: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """A small JSONPatch `add` applier (the only operation the webhook emits)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add"
        parts = op["path"].lstrip("/").split("/")
        node: Any = out
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if last == "-":
            node.append(op["value"])
        elif isinstance(node, list):
            node.insert(int(last), op["value"])
        else:
            node[last] = op["value"]
    return out


def admitted(body: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    verdict = mutate(body, NS, lookup)
    assert verdict.allowed, verdict.message
    return apply_patch(body, verdict.patch), verdict.warnings


def test_one_secret_volume_per_name_and_a_read_only_mount_in_every_container() -> None:
    out, warnings = admitted(pod("shop-db,shop-api"))
    assert warnings == ()
    assert out["spec"]["volumes"] == [
        {"name": "tmpfs-secrets-shop-db", "secret": {"secretName": "shop-db", "defaultMode": 0o440}},
        {"name": "tmpfs-secrets-shop-api", "secret": {"secretName": "api-secret", "defaultMode": 0o400}},
    ]
    for container in out["spec"]["containers"]:
        assert container["volumeMounts"] == [
            {
                "name": "tmpfs-secrets-shop-db",
                "mountPath": "/var/run/secrets/tmpfs-secrets.io/shop-db",
                "readOnly": True,
            },
            {"name": "tmpfs-secrets-shop-api", "mountPath": "/secrets/api", "readOnly": True},
        ]
        assert all("subPath" not in m for m in container["volumeMounts"])


def test_admitting_twice_changes_nothing() -> None:
    once, _ = admitted(pod("shop-db,shop-api", initContainers=[{"name": "init", "image": "x"}]))
    verdict = mutate(once, NS, lookup)
    assert verdict.allowed and verdict.patch == ()


def test_existing_volumes_and_mounts_are_appended_to() -> None:
    body = pod(
        "shop-db",
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    out, _ = admitted(body)
    assert [v["name"] for v in out["spec"]["volumes"]] == ["data", "tmpfs-secrets-shop-db"]
    assert [m["name"] for m in out["spec"]["containers"][0]["volumeMounts"]] == [
        "data",
        "tmpfs-secrets-shop-db",
    ]


def test_only_listed_containers_init_containers_included_when_listed() -> None:
    out, _ = admitted(
        pod("shop-db", containers="sidecar,init", initContainers=[{"name": "init", "image": "x"}])
    )
    assert "volumeMounts" not in out["spec"]["containers"][0]
    assert out["spec"]["containers"][1]["volumeMounts"][0]["name"] == "tmpfs-secrets-shop-db"
    assert out["spec"]["initContainers"][0]["volumeMounts"][0]["name"] == "tmpfs-secrets-shop-db"


def test_unknown_external_secret_gets_its_default_target_and_a_warning() -> None:
    out, warnings = admitted(pod("later"))
    assert out["spec"]["volumes"] == [
        {"name": "tmpfs-secrets-later", "secret": {"secretName": "later", "defaultMode": 0o440}}
    ]
    assert (
        out["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
        == "/var/run/secrets/tmpfs-secrets.io/later"
    )
    assert len(warnings) == 1 and "no ExternalSecret shop/later" in warnings[0]


def test_subpath_mount_of_the_same_secret_is_admitted_with_a_warning() -> None:
    body = pod("shop-db", volumes=[{"name": "mine", "secret": {"secretName": "shop-db"}}])
    body["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "mine", "mountPath": "/etc/app/password", "subPath": "password"}
    ]
    _, warnings = admitted(body)
    assert len(warnings) == 1
    assert "subPath password" in warnings[0] and "never update" in warnings[0]


def test_a_hand_written_mount_of_the_same_secret_at_the_path_is_kept() -> None:
    body = pod("shop-db", volumes=[{"name": "mine", "secret": {"secretName": "shop-db"}}])
    for c in body["spec"]["containers"]:
        c["volumeMounts"] = [{"name": "mine", "mountPath": "/var/run/secrets/tmpfs-secrets.io/shop-db/"}]
    out, _ = admitted(body)
    assert all(len(c["volumeMounts"]) == 1 for c in out["spec"]["containers"])


def test_not_opted_in_is_left_alone() -> None:
    body = pod("shop-db")
    body["metadata"]["labels"] = {"tmpfs-secrets.io/inject": "false"}
    verdict = mutate(body, NS, lookup)
    assert verdict.allowed and verdict.patch == () and verdict.warnings == ()


def test_very_long_and_dotted_names_get_valid_volume_names() -> None:
    for name in ("a" * 253, "shop.db", "x" * 49):
        vol = volume_name(name)
        assert len(vol) <= 63 and "." not in vol and vol[-1].isalnum()
    assert volume_name("shop.db") != volume_name("shop-db")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (pod(None), 'add tmpfs-secrets.io/secrets: "<ExternalSecret>'),
        (pod(""), "annotation tmpfs-secrets.io/secrets is empty"),
        (pod("shop-db,,shop-api"), "empty entry"),
        (pod("shop-db,"), "empty entry"),
        (pod("Shop_DB"), "'Shop_DB' is not a valid name"),
        (pod("shop-db,shop-db"), "lists 'shop-db' twice"),
        (
            pod("shop-db", containers="app,web"),
            "names web, which the pod does not have; its containers are app, sidecar",
        ),
        (pod("shop-db", containers=" , "), "empty entry"),
        (pod("direct"), "this operator serves no Direct delivery"),
        (pod("proc"), "is under /proc"),
        (pod("shop-api,same-path"), "ExternalSecrets shop-api and same-path both mount at /secrets/api"),
    ],
)
def test_malformed_annotations_are_refused_with_what_to_write(body: dict[str, Any], expected: str) -> None:
    verdict = mutate(body, NS, lookup)
    assert not verdict.allowed
    assert expected in verdict.message


def test_a_mount_path_taken_by_another_volume_is_refused() -> None:
    body = pod("shop-api", volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}])
    body["spec"]["containers"][1]["volumeMounts"] = [{"name": "cfg", "mountPath": "/secrets/api"}]
    verdict = mutate(body, NS, lookup)
    assert not verdict.allowed
    assert "container sidecar already mounts volume cfg at /secrets/api" in verdict.message
    assert "set spec.mount.path of shop-api to another folder" in verdict.message


def test_a_volume_name_taken_by_something_else_is_refused() -> None:
    body = pod("shop-db", volumes=[{"name": "tmpfs-secrets-shop-db", "emptyDir": {}}])
    verdict = mutate(body, NS, lookup)
    assert not verdict.allowed and "rename that volume" in verdict.message
