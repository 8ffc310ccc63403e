"""The Helm chart: it lints and renders, its CRDs are the project's, and its RBAC is enough.

"Enough" is shown, not reasoned about: the rendered ServiceAccount, ClusterRole and binding go
onto the real control plane, and the operator runs with a kubeconfig holding a token of that
ServiceAccount (TokenRequest), watching every namespace as the chart's Deployment does. It must
then sync through a SecretStore, a ClusterSecretStore and a per-tenant ServiceAccount identity.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.cluster import binaries
from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env
from tests.integration.conftest import CRDS, EXAMPLES, Kube, Shop

CHART = Path(__file__).resolve().parents[2] / "charts" / "tmpfs-secrets"
ROLE_ARN = "arn:aws:iam::111122223333:role/tmpfs-secrets"
# moto keeps resources per account: a tenant role of the account the values were seeded in.
TENANT_ROLE_ARN = "arn:aws:iam::123456789012:role/shop-tenant"


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(binaries.path("helm")), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def render(release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    # The cluster's version: helm built from source assumes an old default when offline.
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", binaries.K8S_VERSION]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def test_chart_lints() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


def test_chart_crds_are_the_projects_crds() -> None:
    ours = {p.name: p.read_bytes() for p in sorted(CRDS.glob("*.yaml"))}
    charted = {p.name: p.read_bytes() for p in sorted((CHART / "files" / "crds").glob("*.yaml"))}
    assert ours, "no CRDs found in crds/"
    assert charted == ours, (
        "charts/tmpfs-secrets/files/crds/ must be a copy of crds/ "
        "(cp crds/*.yaml charts/tmpfs-secrets/files/crds/)"
    )


def test_chart_renders_a_restricted_operator() -> None:
    docs = render(
        "ops", "tmpfs-secrets", f"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN}"
    )
    kinds = by_kind(docs)
    assert sorted(kinds) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "MutatingWebhookConfiguration",
        "Role",  # the leader Lease, in the release's namespace
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]

    account = kinds["ServiceAccount"]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert account["metadata"]["name"] == "ops-tmpfs-secrets"
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "tmpfs-secrets"
        assert labels["app.kubernetes.io/instance"] == "ops"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"

    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops-tmpfs-secrets"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["args"][0] == "run"
    assert "--health-address=0.0.0.0:8080" in container["args"]
    assert "--webhook-cert-dir=/tls" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]["medium"] == "Memory"

    without = by_kind(render("ops", "tmpfs-secrets", "webhook.enabled=false"))
    assert sorted(without) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",  # metrics only
        "ServiceAccount",
    ]
    assert not any(
        d["kind"] == "Service" and "webhook" in d["metadata"]["name"]
        for d in render("ops", "t", "webhook.enabled=false")
    )
    bare = without["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in bare if a.startswith("--webhook")]

    scoped = by_kind(render("ops", "tmpfs-secrets", "operator.watchNamespaces={shop,billing}"))
    args = scoped["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=shop", "--namespace=billing"]


def test_chart_keeps_the_operator_identity_from_secretstores_unless_allowed() -> None:
    def args(*sets: str) -> list[str]:
        docs = by_kind(render("ops", "tmpfs-secrets", *sets))
        return list(docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"])

    default = args()
    assert "--allow-operator-identity-for-secretstores" not in default
    assert "--min-refresh-interval=10" in default
    allowed = args("operator.allowOperatorIdentityForSecretStores=true", "operator.minRefreshInterval=30")
    assert "--allow-operator-identity-for-secretstores" in allowed
    assert "--min-refresh-interval=30" in allowed


def test_chart_webhooks_select_only_opted_in_pods_with_a_matching_certificate() -> None:
    kinds = by_kind(render("ops", "tmpfs-secrets", "webhook.excludeNamespaces={infra}"))
    (inject,) = kinds["MutatingWebhookConfiguration"]["webhooks"]
    assert inject["objectSelector"] == {"matchLabels": {"tmpfs-secrets.io/inject": "true"}}
    (excluded,) = inject["namespaceSelector"]["matchExpressions"]
    assert excluded["operator"] == "NotIn" and excluded["values"] == ["kube-system", "tmpfs-secrets", "infra"]
    assert inject["failurePolicy"] == "Fail" and inject["timeoutSeconds"] <= 10
    assert inject["clientConfig"]["service"] == {
        "name": "ops-tmpfs-secrets-webhook",
        "namespace": "tmpfs-secrets",
        "path": "/mutate-pods",
        "port": 443,
    }
    (validate,) = kinds["ValidatingWebhookConfiguration"]["webhooks"]
    assert (
        validate["failurePolicy"] == "Ignore" and validate["clientConfig"]["service"]["path"] == "/validate"
    )
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "webhook"

    # The serving certificate is for the Service's name and signed by the caBundle's CA.
    from cryptography import x509

    secret = kinds["Secret"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(inject["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, *_signature_args(cert))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert "ops-tmpfs-secrets-webhook.tmpfs-secrets.svc" in names
    assert (
        validate["clientConfig"]["caBundle"] == inject["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    )


def test_chart_sends_agents_to_the_leader_only() -> None:
    docs = render("ops", "tmpfs-secrets", "networkPolicy.enabled=true")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    direct = services["ops-tmpfs-secrets-direct"]
    assert direct["spec"]["selector"]["tmpfs-secrets.io/leader"] == "true"
    assert direct["spec"]["ports"] == [
        {"name": "agents", "port": 8443, "targetPort": "agents", "protocol": "TCP"}
    ]
    webhook_ports = services["ops-tmpfs-secrets-webhook"]["spec"]["ports"]
    assert [p["targetPort"] for p in webhook_ports] == ["webhook"]
    kinds = by_kind(docs)
    args = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--direct-url=https://ops-tmpfs-secrets-direct.tmpfs-secrets.svc:8443" in args
    # The leader may label its own pod, in the release's namespace only.
    (leader_role,) = [d for d in docs if d["kind"] == "Role"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]} in leader_role["rules"]
    ingress_ports = [p["port"] for p in kinds["NetworkPolicy"]["spec"]["ingress"][0]["ports"]]
    assert "agents" in ingress_ports

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(kinds["Secret"]["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert "ops-tmpfs-secrets-direct.tmpfs-secrets.svc" in names

    # One replica without an election: the Service selects the operator's pod as it is.
    single = render("ops", "tmpfs-secrets", "leaderElection.enabled=false")
    (direct,) = [d for d in single if d["kind"] == "Service" and d["metadata"]["name"].endswith("-direct")]
    assert "tmpfs-secrets.io/leader" not in direct["spec"]["selector"]
    assert not [d for d in single if d["kind"] == "Role"]


def _signature_args(cert: Any) -> tuple[Any, ...]:
    from cryptography.hazmat.primitives.asymmetric import padding

    return (padding.PKCS1v15(), cert.signature_hash_algorithm)


def test_chart_passes_server_side_validation(control_plane: ControlPlane, namespace: str) -> None:
    manifest = yaml.safe_dump_all(render("dry", namespace))
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest
    ).stdout
    assert "deployment.apps/dry-tmpfs-secrets created (server dry run)" in out


# --- the chart's RBAC, used for real ----------------------------------------------------------------


def token_kubeconfig(control_plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    token = control_plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": control_plane.api_url,
                    "certificate-authority-data": base64.b64encode(control_plane.ca.cert).decode(),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": account}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def chart_rbac(control_plane: ControlPlane, crds: Path, namespace: str) -> Iterator[str]:
    """The chart's ServiceAccount, ClusterRole and binding applied; yields the ServiceAccount's name."""
    release = f"r{uuid.uuid4().hex[:8]}"
    # The identity only: no operator runs behind the chart's Service here, so its webhook
    # configurations stay out of the cluster.
    docs = [
        d
        for d in render(release, namespace)
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    text = yaml.safe_dump_all(docs)
    control_plane.kubectl("apply", "-f", "-", input=text)
    try:
        yield by_kind(docs)["ServiceAccount"]["metadata"]["name"]
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "-f", "-", input=text)


def test_chart_rbac_is_least_privilege(control_plane: ControlPlane, chart_rbac: str, namespace: str) -> None:
    who = f"system:serviceaccount:{namespace}:{chart_rbac}"

    def can(verb: str, resource: str) -> bool:
        kind, _, sub = resource.partition("/")
        args = ["auth", "can-i", verb, kind, "-A", f"--as={who}"] + ([f"--subresource={sub}"] if sub else [])
        return control_plane.kubectl(*args, check=False).stdout.strip() == "yes"

    for verb, resource in [
        ("watch", "externalsecrets.tmpfs-secrets.io"),
        ("patch", "externalsecrets.tmpfs-secrets.io/status"),
        ("patch", "secretstores.tmpfs-secrets.io"),  # kopf's last-handled-configuration
        ("watch", "clustersecretstores.tmpfs-secrets.io"),
        ("create", "secrets"),
        # the target Secrets' watch (selected by label on the API server): no GET per Secret
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "serviceaccounts/token"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("patch", "statefulsets.apps"),
        ("patch", "daemonsets.apps"),
    ]:
        assert can(verb, resource), f"the chart's role cannot {verb} {resource}"
    for verb, resource in [
        ("delete", "secrets"),
        ("update", "secrets"),
        ("delete", "externalsecrets.tmpfs-secrets.io"),
        ("patch", "externalsecrets.tmpfs-secrets.io"),  # only their status is written
        ("update", "externalsecrets.tmpfs-secrets.io/status"),
        ("get", "serviceaccounts/token"),
        ("create", "externalsecrets.tmpfs-secrets.io"),
        ("patch", "namespaces"),
        ("list", "pods"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "deployments.apps"),
        ("update", "deployments.apps"),
        ("create", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("patch", "replicasets.apps"),
    ]:
        assert not can(verb, resource), f"the chart's role may {verb} {resource}, which it does not need"


def test_operator_syncs_as_the_charts_service_account(
    control_plane: ControlPlane,
    aws: MotoServer,
    chart_rbac: str,
    namespace: str,
    shop: Shop,
    kube: Kube,
    apply_yaml: Callable[..., str],
    tmp_path: Path,
) -> None:
    kubeconfig = token_kubeconfig(control_plane, namespace, chart_rbac, tmp_path / "sa.kubeconfig")
    env = operator_env(control_plane, aws)
    env["KUBECONFIG"] = str(kubeconfig)
    # Every namespace, as the chart's Deployment runs by default.
    operator = Operator(env=env, log=tmp_path / "operator.log").start()
    cluster_store = f"chart-{uuid.uuid4().hex[:8]}"
    try:
        apply_yaml(EXAMPLES / "secretstore-secretsmanager.yaml", namespace=namespace)
        apply_yaml(EXAMPLES / "externalsecret-shop-db.yaml", namespace=namespace)

        apply_yaml(
            "apiVersion: tmpfs-secrets.io/v1alpha1\nkind: ClusterSecretStore\n"
            f"metadata: {{name: {cluster_store}}}\n"
            "spec:\n  provider: {aws: {service: ParameterStore, region: us-east-1}}\n"
            f"  conditions: [{{namespaces: [{namespace}]}}]\n"
        )
        kube.core.create_namespaced_service_account(
            namespace,
            k8s.V1ServiceAccount(
                metadata=k8s.V1ObjectMeta(
                    name="tenant", annotations={"eks.amazonaws.com/role-arn": TENANT_ROLE_ARN}
                )
            ),
        )
        apply_yaml(
            "apiVersion: tmpfs-secrets.io/v1alpha1\nkind: SecretStore\nmetadata: {name: tenant}\n"
            "spec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n"
            "      auth: {serviceAccountRef: {name: tenant}}\n",
            namespace=namespace,
        )
        for name, store, kind, key in [
            ("config", cluster_store, "ClusterSecretStore", "/shop/prod/RDS_HOST"),
            ("tenant", "tenant", "SecretStore", "prod/shop/supabase"),
        ]:
            apply_yaml(
                "apiVersion: tmpfs-secrets.io/v1alpha1\nkind: ExternalSecret\n"
                f"metadata: {{name: {name}}}\nspec:\n  secretStoreRef: {{name: {store}, kind: {kind}}}\n"
                f"  data: [{{secretKey: VALUE, remoteRef: {{key: {key}}}}}]\n",
                namespace=namespace,
            )

        for name in ("shop-db", "config", "tenant"):
            cond = kube.wait_ready(name, namespace)
            assert cond["reason"] == "Synced"
        assert kube.secret_data("shop-db", namespace) == {
            "RDS_PASSWORD": shop.values["RDS_PASSWORD"],
            "SUPABASE_SERVICE_ROLE_KEY": shop.values["SUPABASE_SERVICE_ROLE_KEY"],
        }
        assert kube.secret_data("config", namespace) == {"VALUE": shop.values["RDS_HOST"]}
        assert json.loads(kube.secret_data("tenant", namespace)["VALUE"]) == {  # type: ignore[index]
            "service_role_key": shop.values["SUPABASE_SERVICE_ROLE_KEY"]
        }
        assert aws.call_counts()["AssumeRoleWithWebIdentity"] >= 1
        assert kube.ready("ClusterSecretStore", cluster_store)["reason"] == "Valid"  # type: ignore[index]
        assert kube.wait_events(namespace, "shop-db", "Synced")  # events create

        # RBAC refused nothing along the way: a denial names the user it refused. (Other refusals can
        # happen: namespaces of earlier tests that are being deleted refuse new Events.)
        assert operator.alive()
        log = operator.log_text()
        assert f"system:serviceaccount:{namespace}:{chart_rbac}" not in log, log[-3000:]
    finally:
        operator.stop()
        control_plane.kubectl("delete", "--ignore-not-found", "clustersecretstore", cluster_store)


# --- chart conventions ---------------------------------------------------------------------------

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


def helm_fails(*args: str) -> str:
    result = subprocess.run(
        [str(binaries.path("helm")), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0, f"helm {' '.join(args)} should have failed"
    return result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_chart_lints_and_renders_each_ci_file(values: Path) -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "--values", str(values))
    out = helm("template", "r", str(CHART), "--kube-version", binaries.K8S_VERSION, "--values", str(values))
    assert "kind: Deployment" in out


def test_values_schema_refuses_unknown_keys_and_wrong_types() -> None:
    base = ["template", "r", str(CHART), "--kube-version", binaries.K8S_VERSION]
    assert "additional properties 'replicas' not allowed" in helm_fails(*base, "--set", "replicas=2")
    assert "additional properties 'watchNamespace' not allowed" in helm_fails(
        *base, "--set", "operator.watchNamespace=shop"
    )
    assert "want integer" in helm_fails(*base, "--set", "replicaCount=two")
    assert "logFormat" in helm_fails(*base, "--set", "operator.logFormat=xml")
    assert "leaderElection.enabled" in helm_fails(
        *base, "--set", "replicaCount=2", "--set", "leaderElection.enabled=false"
    )


def _leaves(values: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _leaves(value, path + ".")
        out.add(path)
    return out


def _documented(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        assert prop.get("description"), f"{path} has no description in values.schema.json"
        out.add(path)
        if prop.get("additionalProperties") is False:
            out |= _documented(prop, path + ".")
    return out


def test_every_value_is_in_the_schema_with_a_description() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = _documented(schema)
    # Free-form Kubernetes objects (resources, security contexts, affinity) are documented as a whole.
    closed = {p for p in _leaves(values) if p.rsplit(".", 1)[0] in documented or "." not in p}
    free = {
        p
        for p in documented
        if "." not in p and schema["properties"][p].get("additionalProperties") is not False
    }
    missing = {p for p in closed if p not in documented and not any(p.startswith(f + ".") for f in free)}
    assert not missing, f"values without a schema entry: {sorted(missing)}"
    assert not documented - _leaves(values), (
        f"schema entries without a value: {sorted(documented - _leaves(values))}"
    )
    # Every top-level key has a comment right above it (or belongs to a commented group).
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line and line[0].isalpha():
            group = number
            while group > 0 and lines[group - 1] and lines[group - 1][0].isalpha():
                group -= 1
            assert group > 0 and lines[group - 1].startswith("#"), f"{line.split(':')[0]} has no comment"


def test_chart_options_render_what_they_promise() -> None:
    kinds = by_kind(
        render("o", "tmpfs-secrets", "serviceAccount.automount=false", "networkPolicy.enabled=true")
    )
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    } in container["volumeMounts"]
    sources = {v["name"]: v for v in pod["volumes"]}["kube-api-access"]["projected"]["sources"]
    assert [next(iter(s)) for s in sources] == ["serviceAccountToken", "configMap", "downwardAPI"]
    assert kinds["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "o"

    docs = render("o", "tmpfs-secrets", "operator.watchNamespaces={shop,billing}", "crds.enabled=false")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"}
    assert roles == {
        ("shop", "o-tmpfs-secrets"),
        ("billing", "o-tmpfs-secrets"),
        ("tmpfs-secrets", "o-tmpfs-secrets-leader-election"),
    }
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]

    crds = [d for d in render("o", "tmpfs-secrets") if d["kind"] == "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in crds) == sorted(
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in CRDS.glob("*.yaml")
    )
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        original = yaml.safe_load(
            (CRDS / f"tmpfs-secrets.io_{crd['spec']['names']['plural']}.yaml").read_text()
        )
        assert crd["spec"] == original["spec"]
