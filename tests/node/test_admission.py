"""What the webhooks refuse, as a user sees it through the API server: each malformed pod
annotation and each ExternalSecret the schema can't judge, with a message that says what to write.
Admitting an already injected pod again changes nothing."""

from __future__ import annotations

import json

from tests.node.conftest import Charted, Pods, pod_manifest
from tests.node.test_injection import opted_in_pod

SHOP_DB_PATH = "/var/run/secrets/tmpfs-secrets.io/shop-db"
BAD_PODS = [
    ("shop-db,,shop-api", "has an empty entry"),
    ("Shop_DB", "'Shop_DB' is not a valid name"),
    ("shop-db,shop-db", "lists 'shop-db' twice"),
]


def dry_run(pods: Pods, manifest: str) -> tuple[int, str, str]:
    out = pods.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=manifest, check=False)
    return out.returncode, out.stdout, out.stderr


def test_malformed_annotations_are_refused_with_what_to_write(pods: Pods, injecting: Charted) -> None:
    for annotation, message in BAD_PODS:
        code, _, err = dry_run(pods, opted_in_pod("bad", pods.image, annotation))
        assert code != 0 and message in err, err
    unknown_container = opted_in_pod("bad", pods.image, "shop-db").replace(
        'tmpfs-secrets.io/secrets: "shop-db"',
        'tmpfs-secrets.io/secrets: "shop-db", tmpfs-secrets.io/containers: "web"',
    )
    code, _, err = dry_run(pods, unknown_container)
    assert code != 0 and "names web, which the pod does not have; its containers are main" in err, err

    no_annotation = pod_manifest("bad", pods.image, "sleep 1").replace(
        "  labels: {app: bad}\n", '  labels: {app: bad, tmpfs-secrets.io/inject: "true"}\n'
    )
    code, _, err = dry_run(pods, no_annotation)
    assert code != 0 and 'add tmpfs-secrets.io/secrets: "<ExternalSecret>' in err, err

    taken = (
        opted_in_pod("bad", pods.image, "shop-db").replace(
            "    command:",
            f"    volumeMounts: [{{name: scratch, mountPath: {SHOP_DB_PATH}}}]\n    command:",
        )
        + "  volumes: [{name: scratch, emptyDir: {}}]\n"
    )
    code, _, err = dry_run(pods, taken)
    assert code != 0 and f"already mounts volume scratch at {SHOP_DB_PATH}" in err, err


def test_admitting_an_injected_pod_again_changes_nothing(pods: Pods, injecting: Charted) -> None:
    code, out, err = dry_run(pods, opted_in_pod("twice", pods.image, "shop-db,shop-api"))
    assert code == 0, err
    once = json.loads(out)
    for field in ("uid", "creationTimestamp", "resourceVersion", "managedFields"):
        once["metadata"].pop(field, None)
    once.pop("status", None)
    code, out, err = dry_run(pods, json.dumps(once))
    assert code == 0, err
    again = json.loads(out)
    assert again["spec"]["volumes"] == once["spec"]["volumes"]
    assert again["spec"]["containers"] == once["spec"]["containers"]
    assert [v["name"] for v in again["spec"]["volumes"] if v["name"].startswith("tmpfs-secrets-")] == [
        "tmpfs-secrets-shop-db",
        "tmpfs-secrets-shop-api",
    ]


def es(extra: str) -> str:
    return f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: invalid}}
spec:
  secretStoreRef: {{name: aws}}
{extra}"""


ONE_KEY = "  data:\n  - {secretKey: password, remoteRef: {key: prod/db, property: password}}\n"
BAD_EXTERNAL_SECRETS = [
    *(
        (
            ONE_KEY + f"  mount: {{path: {root}/db}}\n",
            f"is under {root}, which the container runtime or Kubernetes owns",
        )
        for root in ("/proc", "/sys", "/dev", "/etc", "/var/run/secrets/kubernetes.io")
    ),
    (
        ONE_KEY + "  dataFrom:\n  - extract: {key: prod/db}\n",
        "spec.data[0] and spec.dataFrom[0] both deliver key 'password'",
    ),
    (
        "  data:\n  - {secretKey: HOST, remoteRef: {key: /shop/prod/HOST}}\n"
        "  dataFrom:\n  - find: {path: /shop/prod/}\n",
        "find under /shop/prod/ already delivers /shop/prod/HOST",
    ),
]


def test_invalid_external_secrets_are_refused_with_their_message(pods: Pods, injecting: Charted) -> None:
    before = injecting.requests("/validate")
    for spec, message in BAD_EXTERNAL_SECRETS:
        out = pods.kubectl("apply", "-f", "-", input=es(spec), check=False)
        assert out.returncode != 0, f"admitted: {spec}"
        assert 'admission webhook "validate.tmpfs-secrets.io" denied the request' in out.stderr, out.stderr
        assert message in out.stderr, out.stderr
    assert injecting.requests("/validate") == before + len(BAD_EXTERNAL_SECRETS)
    assert pods.kubectl("get", "externalsecrets.tmpfs-secrets.io", "invalid", check=False).returncode != 0


def test_direct_delivery_is_admitted(pods: Pods, injecting: Charted) -> None:
    out = pods.kubectl("apply", "-f", "-", input=es(ONE_KEY + "  target: {delivery: Direct}\n"))
    assert "Warning" not in out.stderr
