"""Every field of the API, end to end: Secrets Manager (property paths, binary, version stages and
ids, extract), Parameter Store (SecureString, StringList, versions, find), target.name, and each
store identity (static keys from a Secret, a role with an external ID, a ServiceAccount)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.integration.conftest import Kube, Operator

STORE = """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {{name: {name}}}
spec:
  provider:
    aws:
      service: {service}
      region: us-east-1
{extra}"""


def _store(name: str, service: str, extra: str = "") -> str:
    return STORE.format(name=name, service=service, extra=extra)


def test_secrets_manager_fields(
    operator: Operator, aws: MotoServer, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    doc = {"db": {"password": "nested-pw", "hosts": ["h0", "h1"]}, "api.key": "dotted", "count": 5}
    sm.create_secret(Name="app/json", SecretString=json.dumps(doc))
    sm.create_secret(Name="app/bin", SecretBinary=b"\x00\x01binary\xff")
    first = sm.create_secret(Name="app/rotating", SecretString="v1")["VersionId"]
    sm.put_secret_value(SecretId="app/rotating", SecretString="v2")
    sm.create_secret(Name="app/flat", SecretString=json.dumps({"USER": "u", "PORT": 5432, "TLS": True}))

    apply_yaml(_store("sm", "SecretsManager"), namespace=namespace)
    apply_yaml(
        f"""
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: fields}}
spec:
  secretStoreRef: {{name: sm}}
  refreshInterval: 1m
  data:
    - {{secretKey: NESTED, remoteRef: {{key: app/json, property: db.password}}}}
    - {{secretKey: LISTED, remoteRef: {{key: app/json, property: db.hosts.1}}}}
    - {{secretKey: DOTTED, remoteRef: {{key: app/json, property: 'api\\.key'}}}}
    - {{secretKey: NUMBER, remoteRef: {{key: app/json, property: count}}}}
    - {{secretKey: WHOLE, remoteRef: {{key: app/rotating}}}}
    - {{secretKey: PREVIOUS, remoteRef: {{key: app/rotating, version: AWSPREVIOUS}}}}
    - {{secretKey: PINNED, remoteRef: {{key: app/rotating, version: {first}}}}}
    - {{secretKey: BINARY, remoteRef: {{key: app/bin}}}}
  dataFrom:
    - extract: {{key: app/flat}}
  target: {{name: app-secret}}
""",
        namespace=namespace,
    )
    cond = kube.wait_ready("fields", namespace)
    assert cond["message"] == "11 keys from 6 sources"
    secret = kube.secret("app-secret", namespace)
    assert secret is not None
    raw = {k: base64.b64decode(v) for k, v in secret.data.items()}
    assert raw == {
        "NESTED": b"nested-pw",
        "LISTED": b"h1",
        "DOTTED": b"dotted",
        "NUMBER": b"5",
        "WHOLE": b"v2",
        "PREVIOUS": b"v1",
        "PINNED": b"v1",
        "BINARY": b"\x00\x01binary\xff",
        "USER": b"u",
        "PORT": b"5432",
        "TLS": b"true",
    }
    status = kube.get("ExternalSecret", "fields", namespace)["status"]  # type: ignore[index]
    assert status["syncedVersions"]["PINNED"] == first
    assert status["syncedVersions"]["PREVIOUS"] == first
    assert status["syncedVersions"]["WHOLE"] != first


def test_parameter_store_fields(
    operator: Operator, aws: MotoServer, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    import boto3

    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/app/secure", Value="s3cure", Type="SecureString")
    ssm.put_parameter(Name="/app/list", Value="a,b,c", Type="StringList")
    ssm.put_parameter(Name="/app/versioned", Value="first", Type="String")
    ssm.put_parameter(Name="/app/versioned", Value="second", Type="String", Overwrite=True)
    ssm.put_parameter(Name="/app/tree/TOP", Value="top", Type="String")
    ssm.put_parameter(Name="/app/tree/sub/DEEP", Value="deep", Type="SecureString")

    apply_yaml(_store("ps", "ParameterStore"), namespace=namespace)
    apply_yaml(
        """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {name: params}
spec:
  secretStoreRef: {name: ps}
  data:
    - {secretKey: SECURE, remoteRef: {key: /app/secure}}
    - {secretKey: LIST, remoteRef: {key: /app/list}}
    - {secretKey: LATEST, remoteRef: {key: /app/versioned}}
    - {secretKey: FIRST, remoteRef: {key: /app/versioned, version: "1"}}
  dataFrom:
    - find: {path: /app/tree/}
""",
        namespace=namespace,
    )
    kube.wait_ready("params", namespace)
    assert kube.secret_data("params", namespace) == {
        "SECURE": "s3cure",
        "LIST": "a,b,c",
        "LATEST": "second",
        "FIRST": "first",
        "TOP": "top",
        "sub_DEEP": "deep",
    }
    versions = kube.get("ExternalSecret", "params", namespace)["status"]["syncedVersions"]  # type: ignore[index]
    assert versions["FIRST"] == "1" and versions["LATEST"] == "2"


def _synced_through(store_yaml: str, namespace: str, kube: Kube, apply_yaml: Callable[..., str]) -> None:
    import boto3

    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="tenant/db", SecretString="t-pw"
    )
    apply_yaml(store_yaml, namespace=namespace)
    kube.wait_ready("tenant", namespace, kind="SecretStore", reason="Valid")
    apply_yaml(
        """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {name: tenant}
spec:
  secretStoreRef: {name: tenant}
  data: [{secretKey: PW, remoteRef: {key: tenant/db}}]
""",
        namespace=namespace,
    )
    kube.wait_ready("tenant", namespace)
    assert kube.secret_data("tenant", namespace) == {"PW": "t-pw"}


def test_store_with_static_keys_from_a_secret(
    operator: Operator, aws: MotoServer, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    env = aws.env()
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "aws-keys"},
            "stringData": {"id": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"]},
        },
    )
    extra = (
        "      auth:\n        secretRef:\n"
        "          accessKeyIDSecretRef: {name: aws-keys, key: id}\n"
        "          secretAccessKeySecretRef: {name: aws-keys, key: secret}\n"
    )
    _synced_through(_store("tenant", "SecretsManager", extra), namespace, kube, apply_yaml)


def test_store_with_a_role_and_external_id(
    operator: Operator, aws: MotoServer, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    extra = "      role: arn:aws:iam::123456789012:role/shop-secrets\n      externalID: shop\n"
    _synced_through(_store("tenant", "SecretsManager", extra), namespace, kube, apply_yaml)
    assert aws.call_counts()["AssumeRole"] >= 1


def test_store_with_a_service_account(
    operator: Operator,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    control_plane: ControlPlane,
) -> None:
    kube.core.create_namespaced_service_account(
        namespace,
        {
            "metadata": {
                "name": "shop-reader",
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/shop-reader"},
            }
        },
    )
    extra = "      auth:\n        serviceAccountRef: {name: shop-reader}\n"
    _synced_through(_store("tenant", "SecretsManager", extra), namespace, kube, apply_yaml)
    assert aws.call_counts()["AssumeRoleWithWebIdentity"] >= 1
