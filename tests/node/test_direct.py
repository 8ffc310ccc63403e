"""Direct delivery on pods that run, with the operator installed from its chart as admins run it:
two replicas under leader election, IRSA against the emulated STS, the `restricted` profile. The
webhook injects the agent (the operator image) as a native sidecar; the agents stream from the
leader through the chart's Direct Service; the values never touch the Kubernetes API or etcd.

The test node runs no cluster DNS, so the Direct Service gets a fixed ClusterIP that the chart's
certificate names and the agents dial (`direct.url`); on a real cluster it is the Service's name.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import operator_image
from tests.cluster.aws import MotoServer
from tests.cluster.bubble import NODE_IP
from tests.cluster.chart import CRD_NAMES, Release, direct_values, local_values, merge
from tests.cluster.cluster import Cluster
from tests.node.conftest import Pods, wait_until

MOUNT = "/secrets/db"
READS = ("GetSecretValue", "BatchGetSecretValue")


@dataclass
class Installed:
    cluster: Cluster
    release: Release
    apps: Pods  # the namespace the app pods run in (restricted)
    outside: Pods  # another watched namespace
    store: str  # the ClusterSecretStore both namespaces may use
    aws: MotoServer  # seeding and counting (shares moto's state with the pods' endpoint)

    def leader(self) -> str:
        lease = json.loads(
            self.release.kubectl("get", "lease", f"{self.release.name}-tmpfs-secrets-leader", "-o", "json")
        )
        return str(lease["spec"].get("holderIdentity") or "")

    def labelled(self) -> list[str]:
        return [
            p["metadata"]["name"]
            for p in self.release.pod_objects()
            if (p["metadata"].get("labels") or {}).get("tmpfs-secrets.io/leader") == "true"
        ]

    def direct_endpoints(self) -> list[str]:
        slices = json.loads(
            self.release.kubectl(
                "get",
                "endpointslices",
                "-l",
                f"kubernetes.io/service-name={self.release.name}-tmpfs-secrets-direct",
                "-o",
                "json",
            )
        )["items"]
        return sorted(
            str((e.get("targetRef") or {}).get("name"))
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        )

    def reads_of(self, key: str) -> int:
        """AWS reads whose request names `key` (one batch naming it counts once)."""
        return sum(key in body for operation in READS for body in self.aws.request_bodies(operation))


@pytest.fixture(scope="module")
def installed(cluster: Cluster, crds: Path, moto_session: MotoServer) -> Iterator[Installed]:
    image = operator_image.import_into(cluster.node)
    moto_session.reset()
    pod_aws = MotoServer(host=NODE_IP).start()  # the node's address: pods reach it
    suffix = uuid.uuid4().hex[:8]
    system, apps, outside = (f"{p}-{suffix}" for p in ("tmpfs-secrets", "direct", "outside"))
    for namespace in (system, apps, outside):
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    values = merge(
        merge(local_values(image, pod_aws.endpoint), direct_values(cluster)),
        {"replicaCount": 2, "operator": {"watchNamespaces": [apps, outside], "minRefreshInterval": 1}},
    )
    release = Release(cluster, "tsd", system, values)
    store = f"direct-{suffix}"
    try:
        cluster.kubectl("apply", "-f", "-", input=cluster_store(store, [apps, outside]))
        release.adopt_crds(CRD_NAMES)
        release.install()
        yield Installed(cluster, release, Pods(cluster, apps), Pods(cluster, outside), store, moto_session)
    finally:
        print("\n--- operator log:\n" + release.logs()[-4000:])
        agents = cluster.kubectl(
            "logs", "-n", apps, "-l", "app=app", "-c", "tmpfs-secrets-agent", "--tail=30", check=False
        )
        print(f"\n--- agent log:\n{agents.stdout}{agents.stderr}")
        release.helm("uninstall", release.name, "-n", system, "--ignore-not-found")
        cluster.kubectl("delete", "clustersecretstore", store, "--ignore-not-found")
        for namespace in (apps, outside, system):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        pod_aws.stop()


def cluster_store(name: str, namespaces: list[str]) -> str:
    """The admin's store for the app namespaces, read with the operator's own identity (IRSA)."""
    return f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ClusterSecretStore
metadata: {{name: {name}}}
spec:
  provider: {{aws: {{service: SecretsManager, region: us-east-1}}}}
  conditions: [{{namespaces: {json.dumps(namespaces)}}}]
"""


def external_secret(name: str, key: str, refresh: str, store: str) -> str:
    return f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}
  refreshInterval: {refresh}
  data:
  - secretKey: password
    remoteRef: {{key: {key}, property: password}}
  target: {{delivery: Direct}}
  mount: {{path: {MOUNT}, defaultMode: 0440}}
"""


def deployment(name: str, image: str, secret: str, replicas: int) -> str:
    # The app refuses to start without its file: a restart would show in restartCount.
    command = f"cat {MOUNT}/password >/dev/null || exit 7; sleep 3600"
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}, tmpfs-secrets.io/inject: "true"}}
      annotations: {{tmpfs-secrets.io/secrets: {secret}}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, {json.dumps(command)}]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
"""


def seed(aws: MotoServer, key: str) -> str:
    value = f"direct-{uuid.uuid4().hex}"
    aws.client("secretsmanager").create_secret(Name=key, SecretString=json.dumps({"password": value}))
    return value


def rotate(aws: MotoServer, key: str) -> str:
    value = f"direct-{uuid.uuid4().hex}"
    aws.client("secretsmanager").put_secret_value(SecretId=key, SecretString=json.dumps({"password": value}))
    return value


def app_pods(pods: Pods, app: str, count: int) -> list[str]:
    def found() -> list[str] | None:
        listed = json.loads(pods.kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
        running = [p["metadata"]["name"] for p in listed if not p["metadata"].get("deletionTimestamp")]
        return running if len(running) == count else None

    names = list(wait_until(f"{count} pods of {app}", found, 60))
    for name in names:
        pods.wait_running(name, timeout=180)
    return names


def read(pods: Pods, pod: str) -> str:
    return pods.exec(pod, "cat", f"{MOUNT}/password", check=False).stdout


def etcd_text(cluster: Cluster) -> str:
    """Every key and value in etcd's keyspace, through etcd's own v3 JSON gateway (a full range)."""
    body = json.dumps(
        {"key": base64.b64encode(b"\0").decode(), "range_end": base64.b64encode(b"\0").decode()}
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.control_plane.etcd_port}/v3/kv/range",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        kvs = json.loads(answer.read())["kvs"]
    return "\n".join(
        base64.b64decode(kv["key"]).decode("latin-1")
        + " "
        + base64.b64decode(kv.get("value", "")).decode("latin-1")
        for kv in kvs
    )


def direct_status(pods: Pods, name: str) -> Any:
    return (pods.get("externalsecret.tmpfs-secrets.io", name).get("status") or {}).get("direct")


def test_direct_values_reach_the_pods_and_nowhere_else(installed: Installed) -> None:
    apps, cluster = installed.apps, installed.cluster
    key = f"prod/direct/{uuid.uuid4().hex[:6]}"
    first = seed(installed.aws, key)
    apps.apply(external_secret("db", key, "2s", installed.store))
    apps.apply(deployment("app", apps.image, "db", replicas=2))
    pods = app_pods(apps, "app", 2)

    for pod in pods:
        # The app started once, with its file there; the agent is a native sidecar.
        spec = apps.get("pod", pod)["spec"]
        agent = spec["initContainers"][0]
        assert agent["name"] == "tmpfs-secrets-agent" and agent["restartPolicy"] == "Always"
        assert apps.restart_count(pod) == 0
        assert read(apps, pod) == first
        assert apps.mount_type(pod, MOUNT) == "tmpfs"
        assert apps.exec(pod, "stat", "-L", "-c", "%a", f"{MOUNT}/password").stdout.strip() == "440"
        denied = apps.exec(pod, "sh", "-c", f"echo x > {MOUNT}/intruder", check=False)
        assert denied.returncode != 0  # read-only in the app

    # A rotation changes the files in place, without a restart; one fetch serves both pods.
    second = rotate(installed.aws, key)
    for pod in pods:
        wait_until(f"the rotated value in {pod}", lambda pod=pod: read(apps, pod) == second, 60)
        assert apps.restart_count(pod) == 0
    wait_until(
        "the status to count both pods",
        lambda: direct_status(apps, "db") == {"podsCurrent": 2, "podsStale": 0},
        60,
    )

    # No value anywhere in the API server, nor in etcd, nor in what the operator logged.
    seen = cluster.kubectl("get", "secrets,configmaps,events,pods", "-A", "-o", "json").stdout
    seen += cluster.kubectl(
        "get", "externalsecrets.tmpfs-secrets.io,secretstores.tmpfs-secrets.io", "-A", "-o", "json"
    ).stdout
    seen += installed.release.logs()
    stored = etcd_text(cluster)
    assert f"/{apps.namespace}/db" in stored  # the range did cover our objects
    for value in (first, second):
        assert value not in seen
        assert value not in stored
    # Its 2 s refreshes would carry the other tests' sources along in the same batches.
    apps.kubectl("delete", "deployment", "app", "--wait=false")
    apps.kubectl("delete", "externalsecret", "db")


def review(address: str, ca: str, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """One AdmissionReview of `pod`, sent to one replica's webhook port as the API server sends it
    (the API server keeps its connection to one replica; this reaches each on purpose)."""
    context = ssl.create_default_context(cadata=ca)
    context.check_hostname = False  # the certificate names the Service; the chain is still checked
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": pod,
        },
    }
    connection = http.client.HTTPSConnection(address, 9443, context=context, timeout=10)
    try:
        connection.request("POST", "/mutate-pods", json.dumps(body), {"Content-Type": "application/json"})
        return dict(json.loads(connection.getresponse().read())["response"])
    finally:
        connection.close()


def test_every_replica_answers_admissions_from_its_own_cache(installed: Installed) -> None:
    """The webhook Service spans both replicas: the follower injects pods too, from its watches."""
    apps, release = installed.apps, installed.release
    key = f"prod/direct-admission/{uuid.uuid4().hex[:6]}"
    seed(installed.aws, key)
    apps.apply(external_secret("db-admitted", key, "1h", installed.store))
    leader = wait_until(
        "a leader", lambda: installed.leader() in release.ready_pods() and installed.leader(), 60
    )
    (follower,) = [p for p in release.ready_pods() if p != leader]
    secret = json.loads(
        release.kubectl("get", "secret", f"{release.name}-tmpfs-secrets-webhook-tls", "-o", "json")
    )
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    template = yaml.safe_load(deployment("x", apps.image, "db-admitted", 1))["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", **template}
    addresses = {p["metadata"]["name"]: p["status"]["podIP"] for p in release.pod_objects()}
    for replica in (leader, follower):

        def injected(replica: str = replica) -> str | None:
            answer = review(addresses[replica], ca, apps.namespace, pod)
            assert answer["allowed"] is True, (replica, answer)
            added = base64.b64decode(answer["patch"]).decode()
            # Until its watch has seen the new ExternalSecret, a replica mounts it as a Secret.
            return added if "tmpfs-secrets-agent" in added else None

        added = wait_until(f"{replica} to inject the agent", injected, 30)
        assert "tmpfs-secrets-db-admitted" in added, (replica, added)
    apps.kubectl("delete", "externalsecret", "db-admitted")


@pytest.mark.parametrize("kill", ["sigkill", "pod-force-deleted"])
def test_a_leader_killed_keeps_the_files_and_the_next_leader_fetches_once(
    installed: Installed, kill: str
) -> None:
    """The leader killed, with no chance to release its Lease: its process with SIGKILL (kubelet
    restarts the container), or its pod deleted with no grace period. The agents keep their files;
    whichever replica takes the Lease labels its pod, fetches the source once, and every agent gets
    the content that changed meanwhile, with no restart."""
    apps, release = installed.apps, installed.release
    key = f"prod/direct-ha/{uuid.uuid4().hex[:6]}"
    first = seed(installed.aws, key)
    # An hour: no scheduled refresh can happen during the test; every read is the takeover's.
    apps.apply(external_secret("db-ha", key, "1h", installed.store))
    apps.apply(deployment("app-ha", apps.image, "db-ha", replicas=2))
    pods = app_pods(apps, "app-ha", 2)
    assert all(read(apps, pod) == first for pod in pods)

    leader = wait_until(
        "a leader", lambda: installed.leader() in release.ready_pods() and installed.leader(), 60
    )
    # Only the leader's pod is labelled, and it is the only endpoint agents reach.
    wait_until("the leader labelled alone", lambda: installed.labelled() == [leader], 30)
    wait_until("the Direct Service on the leader only", lambda: installed.direct_endpoints() == [leader], 30)

    second = rotate(installed.aws, key)  # no refresh is due: the pods keep the first value
    installed.aws.reset_calls()
    started = time.monotonic()
    if kill == "sigkill":
        node = installed.cluster.node
        assert node is not None
        (status,) = json.loads(release.kubectl("get", "pod", leader, "-o", "json"))["status"][
            "containerStatuses"
        ]
        killed = node.ctr("tasks", "kill", "--signal", "SIGKILL", status["containerID"].split("://", 1)[1])
        assert killed.returncode == 0, killed.stderr
    else:
        release.kubectl("delete", "pod", leader, "--grace-period=0", "--force")
    assert all(read(apps, pod) == first for pod in pods), "an agent lost its files with the operator"
    for pod in pods:
        wait_until(
            f"the content from the next leader in {pod}", lambda pod=pod: read(apps, pod) == second, 120
        )
        assert apps.restart_count(pod) == 0
    print(
        f"\n[direct] leader {kill}: the rotated content in both pods {time.monotonic() - started:.1f}s later"
    )
    now = installed.leader()
    if kill == "sigkill":
        (status,) = json.loads(release.kubectl("get", "pod", leader, "-o", "json"))["status"][
            "containerStatuses"
        ]
        assert status["restartCount"] == 1  # the kill happened, and kubelet restarted the container
    else:
        assert now != leader
    wait_until("the leader labelled alone", lambda: installed.labelled() == [now], 30)
    wait_until("the Direct Service on the leader only", lambda: installed.direct_endpoints() == [now], 60)
    # One read of the source for both pods: the takeover's fetch, no burst, nothing per pod.
    assert installed.reads_of(key) == 1, installed.aws.calls()
    wait_until(
        "the status to count both pods",
        lambda: direct_status(apps, "db-ha") == {"podsCurrent": 2, "podsStale": 0},
        60,
    )
    apps.kubectl("delete", "deployment", "app-ha", "--wait=false")
    apps.kubectl("delete", "externalsecret", "db-ha")
    wait_until(
        "the app's pods gone",
        lambda: not apps.kubectl("get", "pods", "-l", "app=app-ha", "-o", "name").stdout.strip(),
        60,
    )
    release.wait_ready(2)


PROBE = textwrap.dedent(
    """
    import json, socket, ssl, sys, time, urllib.error, urllib.request
    url, secret = sys.argv[1], sys.argv[2]
    host, port = url.split("//")[1].split(":")
    context = ssl.create_default_context(cafile="/ca/ca.crt")
    def token(audience):
        return open(f"/tokens/{audience}").read().strip()
    def stream(tok):
        request = urllib.request.Request(
            f"{url}/v1/stream?secrets={secret}", headers={"Authorization": f"Bearer {tok}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                return {"status": answer.status}
        except urllib.error.HTTPError as e:
            return {"status": e.code, **json.loads(e.read())}
    out = {"named": stream(token("agents")), "audience": stream(token("other")), "none": stream("")}
    # Hostile clients: garbage instead of HTTP, and connections that send half a request and
    # never read; they stay open while the test rotates the app's value.
    held = []
    for _ in range(20):
        raw = socket.create_connection((host, int(port)), timeout=5)
        tls = context.wrap_socket(raw, server_hostname=host)
        tls.sendall(b"GET /v1/stream?secrets=" + secret.encode() + b" HTTP/1.1\\r\\nHost: x\\r\\n")
        held.append(tls)
    junk = socket.create_connection((host, int(port)), timeout=5)
    junk.sendall(b"\\x16\\x03\\x01garbage-not-tls" * 50)
    held.append(junk)
    print(json.dumps(out), flush=True)
    time.sleep(3600)
    """
)


def prober(name: str, image: str, url: str, secret: str, names: str) -> str:
    """A pod (not injected) that asks the Direct endpoint for `secret` with its own tokens: one for
    the agents' audience, one for another audience; its annotation names `names`."""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{tmpfs-secrets.io/secrets: {names}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [python3, -c, {json.dumps(PROBE)}, {url}, {secret}]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
    volumeMounts:
    - {{name: tokens, mountPath: /tokens, readOnly: true}}
    - {{name: ca, mountPath: /ca, readOnly: true}}
  volumes:
  - name: tokens
    projected:
      sources:
      - serviceAccountToken: {{audience: tmpfs-secrets.io, expirationSeconds: 600, path: agents}}
      - serviceAccountToken: {{audience: someone-else, expirationSeconds: 600, path: other}}
  - name: ca
    configMap: {{name: operator-ca}}
"""


def test_refusals_and_hostile_clients_from_running_pods(installed: Installed) -> None:
    apps, outside, release = installed.apps, installed.outside, installed.release
    key = f"prod/direct-refusals/{uuid.uuid4().hex[:6]}"
    first = seed(installed.aws, key)
    apps.apply(external_secret("db-guarded", key, "2s", installed.store))
    apps.apply(deployment("app-guarded", apps.image, "db-guarded", replicas=1))
    (app,) = app_pods(apps, "app-guarded", 1)
    assert read(apps, app) == first

    url = release.values["direct"]["url"]
    ca = release.kubectl("get", "secret", f"{release.name}-tmpfs-secrets-webhook-tls", "-o", "json")
    ca_pem = base64.b64decode(json.loads(ca)["data"]["ca.crt"]).decode()
    image = release.values["image"]["repository"] + ":" + release.values["image"]["tag"]
    for pods in (apps, outside):
        pods.kubectl("create", "configmap", "operator-ca", f"--from-literal=ca.crt={ca_pem}")
    # In the ExternalSecret's namespace, but naming another one; and in another namespace, naming it.
    apps.apply(prober("unnamed", image, url, "db-guarded", "something-else"))
    outside.apply(prober("foreign", image, url, "db-guarded", "db-guarded"))

    def answers(pods: Pods, pod: str) -> dict[str, Any] | None:
        logged = pods.kubectl("logs", pod, check=False).stdout.strip()
        return json.loads(logged.splitlines()[-1]) if logged.startswith("{") else None

    unnamed = wait_until("the prober's answers", lambda: answers(apps, "unnamed"), 180)
    foreign = wait_until("the foreign prober's answers", lambda: answers(outside, "foreign"), 180)
    assert (unnamed["named"]["status"], unnamed["named"]["reason"]) == (403, "NotNamed")
    assert (unnamed["audience"]["status"], unnamed["audience"]["reason"]) == (401, "WrongAudience")
    assert (unnamed["none"]["status"], unnamed["none"]["reason"]) == (401, "NoToken")
    # Another namespace's pod can only ever name its own namespace's ExternalSecrets.
    assert (foreign["named"]["status"], foreign["named"]["reason"]) == (404, "NotFound")

    # With 42 connections held open without reading, and garbage sent, the rotation still
    # reaches the app's pod through the same endpoint, with no restart anywhere.
    second = rotate(installed.aws, key)
    wait_until("the rotated value in the app's pod", lambda: read(apps, app) == second, 60)
    assert apps.restart_count(app) == 0
    for pod in release.pods():
        statuses = json.loads(release.kubectl("get", "pod", pod, "-o", "json"))["status"]["containerStatuses"]
        assert sum(s["restartCount"] for s in statuses) == 0

    # Every refusal logged, and none of the tokens.
    logs = release.logs()
    for reason in ("NotNamed", "WrongAudience", "NoToken", "NotFound"):
        assert reason in logs, f"no refusal {reason} in the operator's log"
    for pods, pod in ((apps, "unnamed"), (outside, "foreign")):
        for audience in ("agents", "other"):
            shown = f"print(open('/tokens/{audience}').read())"
            token = pods.exec(pod, "python3", "-c", shown).stdout.strip()
            assert len(token) > 100 and token not in logs
            assert token.split(".")[2] not in logs  # not even its signature
