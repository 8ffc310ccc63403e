"""The policy `tmpfs-secrets iam-policy` prints for a cluster is enough for the operator, and no more.

The objects are created in the cluster, the policy is printed from them as docs/install.md says
(`kubectl get ... -A -o yaml | tmpfs-secrets iam-policy -`), and attached, exactly as printed, to
the only IAM user the operator has keys of, in moto with IAM enforcement on (tests/cluster/aws_iam.py:
reads are authorized on the secrets' and parameters' real ARNs, BatchGetSecretValue per secret).
Every ExternalSecret syncs; one naming a key the policy doesn't name is refused with AccessDenied,
alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.aws_iam import ACCOUNT, Call, IamMoto, Identity
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env
from tests.cluster.polling import wait_until
from tests.integration.conftest import Emitted, Kube

REPO = Path(__file__).resolve().parents[2]
OPERATOR_POLICY = "the operator's role"  # tmpfs_secrets.iam.OPERATOR, the key of its policy

STORES = """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws-secrets}
spec: {provider: {aws: {service: SecretsManager, region: us-east-1}}}
---
apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws-parameters}
spec: {provider: {aws: {service: ParameterStore, region: us-east-1}}}
"""


def external_secret(name: str, store: str, body: str) -> str:
    return f"""
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: {store}, kind: SecretStore}}
  refreshInterval: 2s
  target: {{name: {name}}}
{body}"""


# Secrets Manager: two ExternalSecrets over three secrets, one shared, and a find: their reads go in
# batches.
SYNCED = {
    "shop-db": (
        "aws-secrets",
        """  data:
    - {secretKey: PASSWORD, remoteRef: {key: prod/shop/db, property: password}}
    - {secretKey: SERVICE_KEY, remoteRef: {key: prod/shop/supabase, property: service_role_key}}
""",
    ),
    "shop-api": (
        "aws-secrets",
        """  data:
    - {secretKey: TOKEN, remoteRef: {key: prod/shop/api}}
    - {secretKey: DB_USER, remoteRef: {key: prod/shop/db, property: user}}
""",
    ),
    # Every secret under a path: ListSecrets, then BatchGetSecretValue.
    "shop-keys": ("aws-secrets", "  dataFrom:\n    - find: {path: prod/keys/}\n"),
    # Parameter Store: a path (GetParametersByPath) and two names (GetParameters).
    "shop-config": ("aws-parameters", "  dataFrom:\n    - find: {path: /shop/prod/}\n"),
    "shop-flags": (
        "aws-parameters",
        """  data:
    - {secretKey: CHECKOUT, remoteRef: {key: /shop/flags/checkout}}
    - {secretKey: SEARCH, remoteRef: {key: /shop/flags/search}}
""",
    ),
}
# Keys that exist in AWS but that no ExternalSecret named when the policy was printed.
REFUSED = {
    "billing-db": ("aws-secrets", "  data:\n    - {secretKey: KEY, remoteRef: {key: prod/billing/db}}\n"),
    "billing-flags": (
        "aws-parameters",
        "  data:\n    - {secretKey: TOKEN, remoteRef: {key: /billing/token}}\n",
    ),
}


def _value(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def seed(aws: IamMoto) -> dict[str, dict[str, str]]:
    """Every value, random, by the ExternalSecret (and key) that should or must not receive it."""
    sm, ssm = aws.client("secretsmanager"), aws.client("ssm")
    db = {"password": _value("pw"), "user": _value("user")}
    service_key, token = _value("srk"), _value("api")
    sm.create_secret(Name="prod/shop/db", SecretString=json.dumps(db))
    sm.create_secret(Name="prod/shop/supabase", SecretString=json.dumps({"service_role_key": service_key}))
    sm.create_secret(Name="prod/shop/api", SecretString=token)
    found = {"stripe": _value("stripe"), "mail": _value("mail")}
    for key, value in found.items():
        sm.create_secret(Name=f"prod/keys/{key}", SecretString=value)
    config = {"RDS_HOST": _value("host"), "RDS_PORT": _value("port")}
    for key, value in config.items():
        ssm.put_parameter(Name=f"/shop/prod/{key}", Value=value, Type="SecureString")
    flags = {"CHECKOUT": _value("checkout"), "SEARCH": _value("search")}
    for key, value in flags.items():
        ssm.put_parameter(Name=f"/shop/flags/{key.lower()}", Value=value, Type="String")
    billing_key, billing_token = _value("billing"), _value("billing-token")
    sm.create_secret(Name="prod/billing/db", SecretString=billing_key)
    ssm.put_parameter(Name="/billing/token", Value=billing_token, Type="SecureString")
    return {
        "shop-db": {"PASSWORD": db["password"], "SERVICE_KEY": service_key},
        "shop-api": {"TOKEN": token, "DB_USER": db["user"]},
        "shop-keys": found,
        "shop-config": config,
        "shop-flags": flags,
        "billing-db": {"KEY": billing_key},
        "billing-flags": {"TOKEN": billing_token},
    }


def print_policy(control_plane: ControlPlane) -> dict[str, object]:
    """`tmpfs-secrets iam-policy` over the cluster's objects, as docs/install.md runs it."""
    listed = control_plane.kubectl(
        "get", "secretstores,clustersecretstores,externalsecrets", "-A", "-o", "yaml"
    ).stdout
    printed = subprocess.run(
        [sys.executable, "-m", "tmpfs_secrets", "iam-policy", "--account", ACCOUNT, "-"],
        input=listed,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    policies = json.loads(printed.stdout)
    assert OPERATOR_POLICY in policies, printed.stdout
    return dict(policies[OPERATOR_POLICY])


@pytest.fixture
def iam_aws(tmp_path: Path) -> Iterator[IamMoto]:
    aws = IamMoto(tmp_path / "moto-iam.log").start()
    try:
        yield aws
    finally:
        aws.stop()


def _ready_since(kube: Kube, name: str, namespace: str) -> str:
    cond = kube.ready("ExternalSecret", name, namespace)
    assert cond is not None and cond["status"] == "True", (name, cond)
    return str(cond["lastTransitionTime"])


def _since(aws: IamMoto, before: int) -> list[Call]:
    return aws.calls()[before:]


def test_the_printed_policy_syncs_everything_it_names_and_nothing_else(
    control_plane: ControlPlane,
    crds: Path,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    iam_aws: IamMoto,
    tmp_path: Path,
) -> None:
    values = seed(iam_aws)
    apply_yaml(STORES, namespace=namespace)
    for name, (store, body) in SYNCED.items():
        apply_yaml(external_secret(name, store, body), namespace=namespace)

    policy = print_policy(control_plane)
    text = json.dumps(policy)
    assert "prod/billing" not in text and "/billing/token" not in text  # the premise of the denial
    keys = iam_aws.user("tmpfs-secrets-operator", policy)
    iam_aws.enforce()

    env = operator_env(control_plane, Identity(iam_aws, keys))
    args = ["--namespace", namespace, "--backoff-cap=4s"]  # the refused keys are retried often
    operator = Operator(env=env, log=tmp_path / "operator.log", args=args).start()
    try:
        for name in SYNCED:
            kube.wait_ready(name, namespace)
            assert kube.secret_data(name, namespace) == values[name], name
        calls = iam_aws.calls()
        operations = {c.operation for c in calls if c.status == 200}
        assert {"BatchGetSecretValue", "ListSecrets", "GetParameters", "GetParametersByPath"} <= operations
        # Everything was allowed, in batches: no refusal, no fallback to GetSecretValue.
        assert [c for c in calls if c.status != 200 or c.denied] == []
        assert "GetSecretValue" not in operations
        assert any(c.size > 1 for c in calls if c.operation == "BatchGetSecretValue")
        since = {name: _ready_since(kube, name, namespace) for name in SYNCED}

        before = len(iam_aws.calls())
        for name, (store, body) in REFUSED.items():
            apply_yaml(external_secret(name, store, body), namespace=namespace)
        for name, key, action in (
            ("billing-db", "prod/billing/db", "secretsmanager:GetSecretValue"),
            ("billing-flags", "/billing/token", "ssm:GetParameters"),
        ):
            cond = kube.wait_ready(name, namespace, status="False", reason="AccessDenied")
            assert key in cond["message"] and action in cond["message"], cond
            assert kube.secret(name, namespace) is None

        # Let the refused keys be retried a few times in batches with the others' refreshes.
        def retried() -> bool:
            calls = _since(iam_aws, before)
            shared = [c for c in calls if c.operation == "BatchGetSecretValue" and c.denied and c.size > 1]
            alone = [c for c in calls if c.operation == "GetParameters" and c.status != 200 and c.size == 1]
            return len(shared) >= 2 and len(alone) >= 2

        wait_until("the refused keys retried along with the others", retried, timeout=60)
        calls = _since(iam_aws, before)
        # A refused parameter in a GetParameters call is asked again alone; a refused secret is
        # reported in its batch and never read on its own.
        assert [c for c in calls if c.operation == "GetSecretValue"] == []
        for name in SYNCED:
            assert _ready_since(kube, name, namespace) == since[name], f"{name} left Ready"
            assert kube.secret_data(name, namespace) == values[name], name
            failures = [e for e in kube.events(namespace, name) if e.type != "Normal"]
            assert failures == [], (name, [(e.reason, e.message) for e in failures])
        for name in REFUSED:
            cond = kube.ready("ExternalSecret", name, namespace)
            assert cond is not None and cond["reason"] == "AccessDenied", (name, cond)

        every_value = {f"{n}.{k}": v for n, kv in values.items() for k, v in kv.items()}
        Emitted(operator, control_plane).assert_free_of(every_value)
    finally:
        operator.stop()
