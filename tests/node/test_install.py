"""The operator installed with `helm install charts/tmpfs-secrets`, running in a pod on the node.

One release serves the module, in the namespaced mode (`operator.watchNamespaces`: the `apps`
namespace only). Its namespace enforces the `restricted` Pod Security profile. The image is the
one `make image` builds, imported into the node's containerd (never pulled). The emulated AWS
listens on the node's address so the pod reaches it, and the operator's pod gets IRSA as on EKS: a
role ARN and a projected ServiceAccount token (audience sts.amazonaws.com) that botocore exchanges
with the emulated STS; no AWS key anywhere in the pod.

The tests then follow an admin's day: the first sync (the time from `helm install` to the first
Ready ExternalSecret is printed, never asserted), a rotation into a running pod, the RBAC the
docs list and no refusal in the operator's log, the namespaced mode's limits, stopping and
restarting the operator through Kubernetes, an upgrade that changes nothing, and an uninstall that
keeps the CRDs and the Secrets.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
import yaml

from tests.cluster import operator_image
from tests.cluster.aws import FAKE_ACCESS_KEY, MotoServer
from tests.cluster.bubble import NODE_IP
from tests.cluster.chart import (
    CHART,
    CRD_NAMES,
    OPERATOR_ROLE_ARN,
    Release,
    helm,
    local_values,
    merge,
    new_namespace,
)
from tests.cluster.cluster import Cluster
from tests.node.conftest import pod_manifest, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs" / "install.md"
NAME = "install-db"
MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{NAME}"
REMOTE_KEY = "prod/install/db"
REFRESH = "2s"
STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass
class Installed:
    cluster: Cluster
    release: Release
    apps: str  # the watched namespace
    outside: str  # a namespace the operator must not touch
    aws: MotoServer  # seeding and counting (shares moto's state with the pods' endpoint)
    store: str  # the ClusterSecretStore (the operator's own identity)
    install_to_ready: float

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check).stdout

    def secret_value(self, key: str = "password") -> str | None:
        found = self.cluster.kubectl("-n", self.apps, "get", "secret", NAME, "-o", "json", check=False)
        if found.returncode != 0:
            return None
        data = json.loads(found.stdout).get("data") or {}
        return base64.b64decode(data[key]).decode() if key in data else None

    def secret_version(self) -> str:
        return str(
            json.loads(self.kubectl("-n", self.apps, "get", "secret", NAME, "-o", "json"))["metadata"][
                "resourceVersion"
            ]
        )

    def rotate(self, value: str) -> None:
        self.aws.client("secretsmanager").put_secret_value(
            SecretId=REMOTE_KEY, SecretString=json.dumps({"password": value})
        )

    def account(self) -> str:
        (account,) = [d for d in self.release.manifest() if d["kind"] == "ServiceAccount"]
        return f"system:serviceaccount:{self.release.namespace}:{account['metadata']['name']}"


def _ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("-n", namespace, "get", "externalsecret", name, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    for condition in json.loads(found.stdout).get("status", {}).get("conditions") or []:
        if condition["type"] == "Ready" and condition["status"] == "True":
            return dict(condition)
    return None


@pytest.fixture(scope="module")
def installed(cluster: Cluster, crds: Path, moto_session: MotoServer) -> Iterator[Installed]:
    image = operator_image.import_into(cluster.node)
    moto_session.reset()
    # The endpoint pods use: the node's address inside the bubble, never an outside one.
    pod_aws = MotoServer(host=NODE_IP).start()
    system = new_namespace(cluster, "tmpfs-secrets", "pod-security.kubernetes.io/enforce=restricted")
    apps = new_namespace(cluster, "apps")
    outside = new_namespace(cluster, "outside")
    store = f"install-{uuid.uuid4().hex[:8]}"
    values = merge(
        local_values(image, pod_aws.endpoint),
        {"operator": {"watchNamespaces": [apps], "minRefreshInterval": 1}},
    )
    # Not "tmpfs-secrets": the demo's release (cluster-scoped names follow the release's).
    release = Release(cluster, "tsi", system, values)
    try:
        moto_session.client("secretsmanager").create_secret(
            Name=REMOTE_KEY, SecretString=json.dumps({"password": "first-" + uuid.uuid4().hex})
        )
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ClusterSecretStore
metadata: {{name: {store}}}
spec:
  provider: {{aws: {{service: SecretsManager, region: us-east-1}}}}
  conditions: [{{namespaces: [{apps}, {outside}]}}]
---
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {NAME}, namespace: {apps}}}
spec:
  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}
  refreshInterval: {REFRESH}
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
""",
        )
        # The session applied the CRDs already: hand them to this release, as an admin adopting
        # existing CRDs into Helm would (the chart installs them itself on a fresh cluster).
        release.adopt_crds(CRD_NAMES)
        started = time.monotonic()
        release.install()
        wait_until("the first ExternalSecret Ready", lambda: _ready(cluster, apps, NAME), 180)
        install_to_ready = time.monotonic() - started
        print(f"\n[install] helm install -> first Ready ExternalSecret: {install_to_ready:.1f}s")
        yield Installed(cluster, release, apps, outside, moto_session, store, install_to_ready)
    finally:
        if release.pods() or release.helm("list", "-n", system, "-q").strip():
            print("\n--- operator log:\n" + release.logs()[-3000:])
            release.helm("uninstall", release.name, "-n", system, "--ignore-not-found")
        cluster.kubectl("delete", "clustersecretstore", store, "--ignore-not-found")
        for namespace in (apps, outside, system):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        pod_aws.stop()


def test_operator_pod_runs_restricted_as_the_charts_account_with_irsa_and_no_keys(
    installed: Installed,
) -> None:
    release = installed.release
    labels = json.loads(installed.kubectl("get", "namespace", release.namespace, "-o", "json"))["metadata"][
        "labels"
    ]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    (pod_name,) = release.ready_pods()
    pod = json.loads(release.kubectl("get", "pod", pod_name, "-o", "json"))
    assert (
        f"system:serviceaccount:{release.namespace}:{pod['spec']['serviceAccountName']}"
        == installed.account()
    )

    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    assert env["AWS_ROLE_ARN"] == OPERATOR_ROLE_ARN
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    assert not set(STATIC_KEYS) & set(env), env.keys()
    assert not container.get("envFrom")
    # What the process really holds, and the token kubelet projected for STS.
    program = (
        "import os, json, base64; "
        "t = open(os.environ['AWS_WEB_IDENTITY_TOKEN_FILE']).read().split('.')[1]; "
        "claims = json.loads(base64.urlsafe_b64decode(t + '=' * (-len(t) % 4))); "
        "print(json.dumps({'env': sorted(os.environ), 'aud': claims['aud'], 'sub': claims['sub']}))"
    )
    seen = json.loads(release.kubectl("exec", pod_name, "--", "python3", "-c", program))
    assert not set(STATIC_KEYS) & set(seen["env"]), "static AWS keys in the operator's environment"
    assert seen["aud"] == ["sts.amazonaws.com"]
    assert seen["sub"] == installed.account()

    # The operator read AWS as the role, through AssumeRoleWithWebIdentity with that token.
    requests = installed.aws.requests()
    sts = [body for op, _, body in requests if op == "AssumeRoleWithWebIdentity"]
    assert sts, [op for op, _, _ in requests]
    assert all(f"RoleArn={OPERATOR_ROLE_ARN}" in unquote_plus(body.decode()) for body in sts)
    reads = [h for op, h, _ in requests if op in ("GetSecretValue", "BatchGetSecretValue")]
    assert reads
    for headers in reads:
        authorization = headers.get("Authorization") or headers.get("authorization") or ""
        key_id = re.search(r"Credential=([A-Z0-9]+)/", authorization)
        assert key_id, "an unsigned AWS read"
        assert key_id.group(1) != FAKE_ACCESS_KEY
        assert key_id.group(1).startswith("ASIA"), "AWS was read with long-lived keys, not the role's"


def test_installed_operator_syncs_and_rotates_into_a_running_pod(installed: Installed) -> None:
    apps = installed.apps
    first = installed.secret_value()
    assert first and first.startswith("first-")
    reader = pod_manifest(
        "reader",
        installed.cluster.image,
        f"while true; do cat {MOUNT}/password; echo; sleep 1; done",
        extra_spec=f"  volumes:\n  - name: s\n    secret: {{secretName: {NAME}}}\n",
        container_extra=f"    volumeMounts:\n    - {{name: s, mountPath: {MOUNT}, readOnly: true}}\n",
    )
    installed.kubectl("-n", apps, "apply", "-f", "-", input=reader)
    wait_until(
        "reader Running", lambda: "Running" in installed.kubectl("-n", apps, "get", "pod", "reader"), 120
    )

    def file() -> str:
        return installed.cluster.kubectl(
            "-n", apps, "exec", "reader", "--", "cat", f"{MOUNT}/password", check=False
        ).stdout

    assert wait_until("the synced value in the pod", lambda: file() == first or None, 60)
    rotated = "rotated-" + uuid.uuid4().hex
    installed.rotate(rotated)
    wait_until("the rotated value in the pod's file", lambda: file() == rotated or None, 90)
    statuses = json.loads(installed.kubectl("-n", apps, "get", "pod", "reader", "-o", "json"))["status"]
    assert sum(s["restartCount"] for s in statuses["containerStatuses"]) == 0
    # No value in anything the operator logged.
    logs = installed.release.logs()
    assert first not in logs and rotated not in logs


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_scraped_from_a_pod_in_the_cluster(installed: Installed) -> None:
    release = installed.release
    (service,) = [
        d for d in release.manifest() if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")
    ]
    live = json.loads(release.kubectl("get", "service", service["metadata"]["name"], "-o", "json"))
    address = f"http://{live['spec']['clusterIP']}:{live['spec']['ports'][0]['port']}/metrics"
    scraper = pod_manifest(
        "scraper", installed.cluster.image, f"wget -qO- {address}", extra_spec="  restartPolicy: Never\n"
    )
    installed.kubectl("-n", installed.apps, "apply", "-f", "-", input=scraper)

    def done() -> str | None:
        phase = json.loads(installed.kubectl("-n", installed.apps, "get", "pod", "scraper", "-o", "json"))[
            "status"
        ].get("phase")
        assert phase != "Failed", installed.kubectl("-n", installed.apps, "logs", "scraper", check=False)
        return phase if phase == "Succeeded" else None

    wait_until("the scraper pod done", done, 120)
    text = installed.kubectl("-n", installed.apps, "logs", "scraper")
    samples = _samples(text)
    sm_success = sum(
        v
        for k, v in samples.items()
        if k.startswith("tmpfs_secrets_aws_calls_total{")
        and 'service="secretsmanager"' in k
        and 'outcome="success"' in k
    )
    assert sm_success >= 1, text
    assert samples['tmpfs_secrets_external_secrets{ready="True",reason="Synced"}'] >= 1
    assert samples["tmpfs_secrets_leader"] == 1
    assert "tmpfs_secrets_refresh_lag_seconds" in samples
    assert samples['tmpfs_secrets_sync_duration_seconds_count{service="SecretsManager"}'] >= 1
    assert samples["tmpfs_secrets_cache_hits_total"] + samples["tmpfs_secrets_cache_misses_total"] >= 1
    for secret in (installed.secret_value() or "-", REMOTE_KEY, NAME, "password"):
        assert secret not in text, f"{secret!r} in the metrics"


def _documented_rules() -> dict[str, list[dict[str, Any]]]:
    text = DOCS.read_text()
    block = text.split("<!-- rbac:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    return dict(yaml.safe_load(block))


def _rules(doc: dict[str, Any], fullname: str = "") -> list[dict[str, Any]]:
    keys = ("apiGroups", "resources", "resourceNames", "verbs")
    rules = [{k: rule[k] for k in keys if k in rule} for rule in doc["rules"]]
    for rule in rules:  # the documented list names the release generically
        if "resourceNames" in rule:
            rule["resourceNames"] = [
                n.replace(fullname, "<release>-tmpfs-secrets") for n in rule["resourceNames"]
            ]
    return rules


def test_rbac_is_the_documented_list_and_the_operator_was_refused_nothing(installed: Installed) -> None:
    documented = _documented_rules()
    manifest = installed.release.manifest()
    (cluster_role,) = [d for d in manifest if d["kind"] == "ClusterRole"]
    roles = {d["metadata"]["namespace"]: d for d in manifest if d["kind"] == "Role"}
    assert sorted(roles) == sorted([installed.apps, installed.release.namespace])
    assert _rules(cluster_role) == documented["cluster"]
    assert _rules(roles[installed.apps]) == documented["namespaced"]
    fullname = cluster_role["metadata"]["name"]
    assert _rules(roles[installed.release.namespace], fullname) == documented["leaderElection"]
    # The default (every namespace): one ClusterRole with both lists, no Role.
    rendered = [
        d
        for d in yaml.safe_load_all(
            helm(installed.cluster.kubeconfig, "template", "r", str(CHART), "--kube-version", "1.37.2")
        )
        if d
    ]
    (default_role,) = [d for d in rendered if d["kind"] == "ClusterRole"]
    (leader_role,) = [d for d in rendered if d["kind"] == "Role"]
    assert _rules(default_role) == documented["cluster"] + documented["namespaced"]
    assert _rules(leader_role, "r-tmpfs-secrets") == documented["leaderElection"]

    logs = installed.release.logs()
    assert "Forbidden" not in logs and installed.account() not in logs, logs[-3000:]


def test_namespaced_mode_cannot_touch_secrets_outside_its_namespaces(installed: Installed) -> None:
    who = installed.account()

    def can(verb: str, resource: str, namespace: str) -> bool:
        out = installed.cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={who}", check=False
        )
        return out.stdout.strip() == "yes"

    assert can("create", "secrets", installed.apps)
    assert can("patch", "secrets", installed.apps)
    for verb in ("create", "patch", "get", "update", "delete", "list"):
        assert not can(verb, "secrets", installed.outside), (
            f"the namespaced operator may {verb} secrets elsewhere"
        )
        assert not can(verb, "secrets", "kube-system")
    # An ExternalSecret outside the watched namespaces is left alone: no Secret, no status.
    installed.kubectl(
        "-n",
        installed.outside,
        "apply",
        "-f",
        "-",
        input=f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {NAME}}}
spec:
  secretStoreRef: {{name: {installed.store}, kind: ClusterSecretStore}}
  refreshInterval: {REFRESH}
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
""",
    )
    installed.rotate("nudge-" + uuid.uuid4().hex)  # the watched one syncs again meanwhile
    wait_until(
        "the watched ExternalSecret synced again",
        lambda: (installed.secret_value() or "").startswith("nudge-"),
        60,
    )
    assert (
        installed.cluster.kubectl("-n", installed.outside, "get", "secret", NAME, check=False).returncode != 0
    )
    outside = json.loads(
        installed.kubectl("-n", installed.outside, "get", "externalsecret", NAME, "-o", "json")
    )
    assert not outside.get("status")


def test_stop_and_restart_through_kubernetes(installed: Installed) -> None:
    release = installed.release
    release.scale(0)
    installed.aws.reset_calls()
    while_stopped = "stopped-" + uuid.uuid4().hex
    installed.rotate(while_stopped)
    before = installed.secret_value()
    time.sleep(6)  # three refresh intervals with no operator: nothing may happen
    assert installed.secret_value() == before
    assert not [c for c in installed.aws.calls() if c != "PutSecretValue"]

    release.scale(1)
    wait_until("the value rotated while stopped", lambda: installed.secret_value() == while_stopped, 90)

    (old,) = release.ready_pods()
    release.delete_pod(old)
    (new,) = release.wait_ready(1)
    assert new != old
    after_restart = "restarted-" + uuid.uuid4().hex
    installed.rotate(after_restart)
    wait_until("a rotation through the new pod", lambda: installed.secret_value() == after_restart, 90)


def test_failover_to_the_other_replica(installed: Installed) -> None:
    """Two replicas: delete the leader's pod; another replica takes the Lease over and carries on
    without emptying or rewriting the Secret, and with one STS exchange and no burst of reads."""
    release = installed.release
    release.upgrade(merge(release.values, {"replicaCount": 2}))
    (pdb,) = [d for d in release.manifest() if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    (cluster_role,) = [d for d in release.manifest() if d["kind"] == "ClusterRole"]
    lease = f"{cluster_role['metadata']['name']}-leader"

    def holder() -> str:
        found = json.loads(release.kubectl("get", "lease", lease, "-o", "json"))
        return str(found["spec"].get("holderIdentity") or "")

    leader = wait_until(
        "a leader among the Ready replicas", lambda: holder() in release.ready_pods() and holder(), 60
    )
    (follower,) = [p for p in release.ready_pods() if p != leader]
    reads = ("GetSecretValue", "BatchGetSecretValue")

    # Only the leader reads AWS: over a few refreshes, the follower exchanged no token with STS.
    installed.aws.reset_calls()
    wait_until("two refreshes by the leader", lambda: sum(c in reads for c in installed.aws.calls()) >= 2, 30)
    assert "AssumeRoleWithWebIdentity" not in installed.aws.calls()

    value, secret = installed.secret_value(), installed.secret_version()
    es = json.loads(installed.kubectl("-n", installed.apps, "get", "externalsecret", NAME, "-o", "json"))
    installed.aws.reset_calls()
    started = time.monotonic()
    release.delete_pod(leader)
    # The follower, or the pod the Deployment starts in the leader's place if it asks first: either
    # is a correct takeover.
    new_leader = wait_until(
        "another replica holding the Lease", lambda: holder() not in ("", leader) and holder(), 60
    )
    failover = time.monotonic() - started
    print(f"\n[install] failover (leader pod deleted -> {new_leader} holds the Lease): {failover:.1f}s")
    wait_until(
        "three refreshes by the new leader", lambda: sum(c in reads for c in installed.aws.calls()) >= 3, 60
    )
    elapsed = time.monotonic() - started
    calls = installed.aws.calls()
    assert calls.count("AssumeRoleWithWebIdentity") == 1, calls
    # No burst: one read per refresh interval of the only source, at most (plus the one in flight).
    assert sum(c in reads for c in calls) <= elapsed / 2 + 2, calls
    assert installed.secret_value() == value
    assert installed.secret_version() == secret, "the Secret was rewritten though nothing changed"
    after = json.loads(installed.kubectl("-n", installed.apps, "get", "externalsecret", NAME, "-o", "json"))
    assert after["metadata"]["resourceVersion"] == es["metadata"]["resourceVersion"], "status rewritten"
    release.wait_ready(2)  # the Deployment replaced the deleted pod
    assert holder() == new_leader
    # The follower was never restarted (its liveness does not depend on a loop it doesn't run).
    statuses = json.loads(release.kubectl("get", "pod", follower, "-o", "json"))["status"][
        "containerStatuses"
    ]
    assert sum(s["restartCount"] for s in statuses) == 0
    rotated = "after-failover-" + uuid.uuid4().hex
    installed.rotate(rotated)
    wait_until("a rotation through the new leader", lambda: installed.secret_value() == rotated, 60)


def test_helm_upgrade_with_the_same_values_changes_nothing(installed: Installed) -> None:
    release = installed.release

    def versions() -> dict[tuple[str, str], str]:
        out = {}
        for doc in release.manifest():
            namespace = doc["metadata"].get("namespace")
            args = ["get", doc["kind"], doc["metadata"]["name"], "-o", "json"]
            if namespace:
                args = ["-n", namespace, *args]
            live = json.loads(installed.kubectl(*args))
            out[(doc["kind"], doc["metadata"]["name"])] = live["metadata"]["resourceVersion"]
        return out

    before = versions()
    pods = release.pods()
    secret = installed.secret_version()
    release.upgrade()
    assert versions() == before
    assert release.pods() == pods
    assert installed.secret_version() == secret


def test_helm_uninstall_keeps_crds_and_target_secrets(installed: Installed) -> None:
    value = installed.secret_value()
    assert value
    managed = {
        d["metadata"]["name"] for d in installed.release.manifest() if d["kind"] == "CustomResourceDefinition"
    }
    assert managed == set(CRD_NAMES), "the release does not manage the CRDs"
    installed.release.uninstall()
    wait_until("no operator pod", lambda: not installed.release.pods() or None, 120)
    for crd in CRD_NAMES:
        live = json.loads(installed.kubectl("get", "crd", crd, "-o", "json"))
        assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert installed.secret_value() == value
    installed.kubectl("-n", installed.apps, "get", "externalsecret", NAME)
