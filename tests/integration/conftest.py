"""Fixtures for the sync tests, over the shared `crds` and `operator` fixtures of tests/conftest.py.

The operator runs as `python -m tmpfs_secrets run` against the local control plane and moto,
with its log in a file, exactly as a user would run it. `Emitted` gathers everything it put
out (its log, the Events, the status of every object of ours) so a test can search it for the
values it seeded.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env
from tests.cluster.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"
GROUP, VERSION = "tmpfs-secrets.io", "v1alpha1"
PLURALS = {
    "ExternalSecret": "externalsecrets",
    "SecretStore": "secretstores",
    "ClusterSecretStore": "clustersecretstores",
}
# Every AWS operation the providers use: an "outage" makes all of them fail.
AWS_READS = (
    "GetSecretValue",
    "BatchGetSecretValue",
    "DescribeSecret",
    "ListSecretVersionIds",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
)


# --- Kubernetes helpers -----------------------------------------------------------------------------


@dataclass
class Kube:
    """Small synchronous helpers over the admin client for set-up and assertions."""

    api: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            if namespace is None:
                found = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name)
            else:
                found = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURALS[kind], name
                )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(found)

    def ready(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The Ready condition, or None while there is none."""
        obj = self.get(kind, name, namespace) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return dict(cond)
        return None

    def wait_ready(
        self,
        name: str,
        namespace: str,
        *,
        status: str = "True",
        reason: str | None = None,
        kind: str = "ExternalSecret",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cond = self.ready(kind, name, namespace if kind != "ClusterSecretStore" else None)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return cond
            return None

        try:
            return wait_until(f"{kind} {namespace}/{name} Ready={status} {reason or ''}", check, timeout)
        except AssertionError as e:
            last = self.ready(kind, name, namespace if kind != "ClusterSecretStore" else None)
            raise AssertionError(f"{e}; Ready condition now: {last}") from None

    def secret(self, name: str, namespace: str) -> k8s.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        found = self.secret(name, namespace)
        if found is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    def events(self, namespace: str, name: str | None = None) -> list[k8s.CoreV1Event]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if name is None or e.involved_object.name == name]

    def wait_events(
        self, namespace: str, name: str, reason: str, timeout: float = 30.0
    ) -> list[k8s.CoreV1Event]:
        """The events of this reason on an object, once there is one (the operator posts events
        from a queue, a moment after the status they go with)."""
        found: list[k8s.CoreV1Event] = wait_until(
            f"a {reason} event on {namespace}/{name}",
            lambda: [e for e in self.events(namespace, name) if e.reason == reason],
            timeout=timeout,
        )
        return found

    def event_reasons(self, namespace: str, name: str) -> list[str]:
        return [
            e.reason
            for e in sorted(self.events(namespace, name), key=lambda e: e.metadata.creation_timestamp)
        ]


@pytest.fixture
def kube(api_client: k8s.ApiClient) -> Kube:
    return Kube(api_client)


@pytest.fixture
def other_namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    """A second fresh namespace, for tests about crossing namespaces."""
    core = k8s.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


# --- AWS helpers ------------------------------------------------------------------------------------


@dataclass
class Shop:
    """The seed's values in moto, each with a random part so a search for it can't match by chance."""

    values: dict[str, str]
    sm: Any
    ssm: Any

    def rotate_password(self) -> str:
        new = f"pw-{uuid.uuid4().hex}"
        self.sm.put_secret_value(SecretId="prod/shop/db", SecretString=json.dumps({"password": new}))
        self.values["RDS_PASSWORD_ROTATED"] = new
        return new

    @property
    def searchable(self) -> dict[str, str]:
        """The values random enough that finding one in a text can only mean it leaked."""
        return {k: v for k, v in self.values.items() if k != "RDS_PORT"}

    @property
    def secret_values(self) -> list[str]:
        """What must never appear outside a Secret."""
        return [v for k, v in self.values.items() if k.startswith(("RDS_PASSWORD", "SUPABASE"))]


def seed_shop(aws: MotoServer) -> Shop:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    ssm = boto3.client("ssm", region_name="us-east-1")
    values = {
        "RDS_PASSWORD": f"pw-{uuid.uuid4().hex}",
        "SUPABASE_SERVICE_ROLE_KEY": f"srk-{uuid.uuid4().hex}",
        "RDS_HOST": f"shop-{uuid.uuid4().hex[:12]}.cluster-abc.us-east-1.rds.amazonaws.com",
        "RDS_PORT": str(40000 + uuid.uuid4().int % 20000),
        "RDS_USER": f"shop_{uuid.uuid4().hex[:12]}",
        "RDS_DB": f"shopdb_{uuid.uuid4().hex[:12]}",
        "COGNITO_CLIENT_ID": f"cid{uuid.uuid4().hex[:20]}",
        "COGNITO_USER_POOL_ID": f"us-east-1_{uuid.uuid4().hex[:9]}",
    }
    sm.create_secret(Name="prod/shop/db", SecretString=json.dumps({"password": values["RDS_PASSWORD"]}))
    sm.create_secret(
        Name="prod/shop/supabase",
        SecretString=json.dumps({"service_role_key": values["SUPABASE_SERVICE_ROLE_KEY"]}),
    )
    for key in ("RDS_HOST", "RDS_PORT", "RDS_USER", "RDS_DB", "COGNITO_CLIENT_ID", "COGNITO_USER_POOL_ID"):
        ssm.put_parameter(Name=f"/shop/prod/{key}", Value=values[key], Type="String")
    return Shop(values, sm, ssm)


@pytest.fixture
def shop(aws: MotoServer) -> Shop:
    return seed_shop(aws)


# --- everything the operator emitted ----------------------------------------------------------------


@dataclass
class Emitted:
    """The operator's log, every Event, and the status of every object of ours, as one text."""

    operator: Operator
    control_plane: ControlPlane

    def text(self) -> str:
        parts = [self.operator.log_text()]
        parts.append(self.control_plane.kubectl("get", "events", "-A", "-o", "json").stdout)
        for plural in PLURALS.values():
            listed = json.loads(self.control_plane.kubectl("get", plural, "-A", "-o", "json").stdout)
            for item in listed["items"]:
                # status and metadata (annotations kopf writes), never the user's own spec
                parts.append(json.dumps({"metadata": item["metadata"], "status": item.get("status")}))
        return "\n".join(parts)

    def assert_free_of(self, values: Mapping[str, str] | list[str]) -> None:
        text = self.text()
        items = values.items() if isinstance(values, Mapping) else ((v, v) for v in values)
        leaked = [name for name, value in items if value and value in text]
        assert not leaked, f"secret values leaked into logs, events or status: {leaked}"


@pytest.fixture
def counted(
    control_plane: ControlPlane, aws: MotoServer, crds: Path, namespace: str, tmp_path: Path
) -> Iterator[Operator]:
    """The operator under its own name, so the audit log tells its requests apart."""
    env = operator_env(control_plane, aws)
    env["KUBECONFIG"] = str(control_plane.operator_kubeconfig())
    op = Operator(env=env, log=tmp_path / "operator.log", args=["--namespace", namespace]).start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def emitted(operator: Operator, control_plane: ControlPlane) -> Emitted:
    return Emitted(operator, control_plane)


def apply_examples(apply_yaml: Callable[..., str], namespace: str, *names: str) -> None:
    for name in names:
        apply_yaml(EXAMPLES / name, namespace=namespace)


def sync_shop_examples(
    apply_yaml: Callable[..., str], namespace: str, kube: Kube, interval: str = "2s"
) -> None:
    """Both example stores and both shop ExternalSecrets (with `interval`), waited on until Ready."""
    apply_examples(
        apply_yaml, namespace, "secretstore-secretsmanager.yaml", "secretstore-parameterstore.yaml"
    )
    for name in ("shop-db", "shop-config"):
        apply_yaml(with_interval(EXAMPLES / f"externalsecret-{name}.yaml", interval), namespace=namespace)
    for name in ("shop-db", "shop-config"):
        kube.wait_ready(name, namespace)


def with_interval(path: Path, interval: str) -> str:
    """An example's YAML with another refreshInterval (short ones keep the tests quick)."""
    text = path.read_text()
    lines = [
        f"  refreshInterval: {interval}" if line.startswith("  refreshInterval:") else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"
