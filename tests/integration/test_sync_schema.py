"""The API server itself rejects invalid objects, with a message that says what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane

ES = """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: bad}}
spec:
{spec}
"""
STORE = """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: {kind}
metadata: {{name: bad-store}}
spec:
{spec}
"""

REF = "  secretStoreRef: {name: aws}\n"
ONE = "  data: [{secretKey: A, remoteRef: {key: k}}]\n"

CASES = [
    (
        ES,
        "ExternalSecret",
        REF,
        "spec.data or spec.dataFrom must list at least one source",
    ),
    (
        ES,
        "ExternalSecret",
        REF + "  refreshInterval: 5 minutes\n  data: [{secretKey: A, remoteRef: {key: k}}]\n",
        "refreshInterval must be 0 (fetch once) or a duration such as 1h",
    ),
    (
        ES,
        "ExternalSecret",
        "  secretStoreRef: {name: aws, kind: Vault}\n  data: [{secretKey: A, remoteRef: {key: k}}]\n",
        'supported values: "SecretStore", "ClusterSecretStore"',
    ),
    (
        ES,
        "ExternalSecret",
        REF + "  data: [{secretKey: a/b, remoteRef: {key: k}}]\n",
        "secretKey",
    ),
    (
        ES,
        "ExternalSecret",
        REF + "  data:\n  - {secretKey: A, remoteRef: {key: k}}\n  - {secretKey: A, remoteRef: {key: l}}\n",
        "Duplicate value",
    ),
    (
        ES,
        "ExternalSecret",
        REF + "  dataFrom: [{extract: {key: k}, find: {path: /p/}}]\n",
        "exactly one of extract or find",
    ),
    (
        ES,
        "ExternalSecret",
        REF + "  dataFrom: [{find: {}}]\n",
        "find needs path, name or tags",
    ),
    (
        ES,
        "ExternalSecret",
        REF + ONE + "  target: {creationPolicy: Adopt}\n",
        'supported values: "Owner", "Orphan", "Merge"',
    ),
    (
        ES,
        "ExternalSecret",
        REF + ONE + "  target: {creationPolicy: Merge, delivery: Direct}\n",
        "can't be used with delivery Direct",
    ),
    (
        STORE,
        "SecretStore",
        "  provider: {aws: {region: us-east-1, service: Vault}}\n",
        '"SecretsManager", "ParameterStore"',
    ),
    (STORE, "SecretStore", "  provider: {aws: {region: mars}}\n", "spec.provider.aws.region"),
    (
        STORE,
        "SecretStore",
        "  provider: {aws: {region: us-east-1, externalID: shop}}\n",
        "externalID is only used with role",
    ),
    (
        STORE,
        "SecretStore",
        "  provider: {aws: {region: us-east-1, role: 'arn:aws:iam::1:role/x'}}\n",
        "spec.provider.aws.role",
    ),
    (
        STORE,
        "SecretStore",
        "  provider:\n    aws:\n      region: us-east-1\n      auth:\n        serviceAccountRef: {name: a}\n"
        "        secretRef:\n          accessKeyIDSecretRef: {name: k, key: id}\n"
        "          secretAccessKeySecretRef: {name: k, key: secret}\n",
        "exactly one of serviceAccountRef (or jwt.serviceAccountRef) or secretRef",
    ),
    (
        STORE,
        "SecretStore",
        "  provider: {aws: {region: us-east-1, auth: {serviceAccountRef: {name: a, namespace: other}}}}\n",
        'unknown field "spec.provider.aws.auth.serviceAccountRef.namespace"',
    ),
    (
        STORE,
        "ClusterSecretStore",
        "  provider: {aws: {region: us-east-1, auth: {serviceAccountRef: {name: a}}}}\n",
        "namespace: Required value",
    ),
    (
        STORE,
        "ClusterSecretStore",
        "  provider: {aws: {region: us-east-1}}\n  conditions: [{}]\n",
        "each condition needs namespaces or namespaceSelector",
    ),
    (
        STORE,
        "ClusterSecretStore",
        "  provider: {aws: {region: us-east-1}}\n"
        "  conditions: [{namespaceSelector: {matchExpressions: [{key: team, operator: In}]}}]\n",
        "operators In and NotIn need values",
    ),
]


@pytest.mark.parametrize(("template", "kind", "spec", "message"), CASES, ids=[c[3][:40] for c in CASES])
def test_invalid_objects_are_rejected_with_a_clear_message(
    template: str, kind: str, spec: str, message: str, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    text = template.format(kind=kind, spec=spec)
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)
    assert result.returncode != 0, f"accepted:\n{text}"
    assert message in result.stderr, result.stderr


def test_defaults_are_filled_in_by_the_api_server(
    crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    import json

    text = ES.format(spec=REF + ONE + "  mount: {path: /s}\n")
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    spec = json.loads(control_plane.kubectl("get", "tes", "bad", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]
    assert spec["refreshInterval"] == "1h"
    assert spec["secretStoreRef"]["kind"] == "SecretStore"
    assert spec["target"] == {
        "delivery": "Secret",
        "creationPolicy": "Owner",
        "deletionPolicy": "Retain",
        "immutable": False,
    }
    assert spec["refreshPolicy"] == "Periodic"
    assert spec["mount"] == {"path": "/s", "defaultMode": 0o440}
    store = STORE.format(kind="SecretStore", spec="  provider: {aws: {region: eu-west-1}}\n")
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=store)
    got = json.loads(control_plane.kubectl("get", "tss", "bad-store", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["provider"]["aws"]["service"] == "SecretsManager"


def test_short_names_and_category(crds: Path, control_plane: ControlPlane) -> None:
    resources = control_plane.kubectl("api-resources", "--api-group=tmpfs-secrets.io", "-o", "wide").stdout
    for short in ("tes", "tss", "tcss"):
        assert f" {short} " in resources
    for taken in (" es ", " ss ", " css "):
        assert taken not in resources
    assert "tmpfs-secrets" in resources  # the category: `kubectl get tmpfs-secrets`
