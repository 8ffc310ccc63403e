"""The restricted Pod Security profile runs, and a webhook served by a pod through a Service is called."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.cluster import Cluster
from tests.node.conftest import Pods, pod_manifest, wait_until

RESTRICTED_SECURITY = """    securityContext:
      runAsNonRoot: true
      runAsUser: 65534
      runAsGroup: 65534
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
"""


def test_a_restricted_pod_runs_in_a_namespace_that_enforces_restricted(pods: Pods) -> None:
    pods.kubectl("label", "namespace", pods.namespace, "pod-security.kubernetes.io/enforce=restricted")
    rejected = pods.kubectl(
        "apply", "-f", "-", input=pod_manifest("loose", pods.image, "sleep 3600"), check=False
    )
    assert rejected.returncode != 0
    assert "violates PodSecurity" in rejected.stderr

    report = "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"
    # touch's complaint goes to stdout, so the report keeps its order (stderr is a separate log stream).
    script = f'{report}; err=$(touch /x 2>&1) || echo "ro-root: $err"; sleep 3600'

    pods.apply(pod_manifest("tight", pods.image, script, container_extra=RESTRICTED_SECURITY))
    pods.wait_running("tight")
    logs = wait_until("the pod's report", lambda: "ro-root" in pods.logs("tight") and pods.logs("tight"), 30)
    fields = dict(line.split(":", 1) for line in logs.splitlines() if ":" in line)
    assert logs.splitlines()[0] == "65534"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a seccomp filter is active
    assert "Read-only file system" in fields["ro-root"]


WEBHOOK_SERVER = """apiVersion: v1
kind: Service
metadata:
  name: echo-webhook
spec:
  selector: {{app: echo-webhook}}
  ports: [{{port: 443, targetPort: 8443}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-webhook
  labels: {{app: echo-webhook}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [/usr/local/bin/echo-webhook, --cert, /tls/tls.crt, --key, /tls/tls.key]
    readinessProbe:
      httpGet: {{path: /healthz, port: 8443, scheme: HTTPS}}
      periodSeconds: 1
    volumeMounts:
    - {{name: tls, mountPath: /tls, readOnly: true}}
  volumes:
  - name: tls
    secret: {{secretName: echo-webhook-tls}}
"""

WEBHOOK_CONFIG = """apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: echo.tmpfs-secrets.local
  clientConfig:
    service: {{namespace: {namespace}, name: echo-webhook, path: /validate, port: 443}}
    caBundle: {ca}
  rules:
  - {{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}
  namespaceSelector:
    matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
  objectSelector:
    matchLabels: {{echo: "yes"}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
"""


@pytest.fixture
def webhook_config(cluster: Cluster) -> Iterator[str]:
    name = f"echo-{uuid.uuid4().hex[:8]}"
    yield name
    cluster.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def test_a_webhook_with_a_service_reference_served_by_a_pod_is_called(
    pods: Pods, cluster: Cluster, webhook_config: str
) -> None:
    host = f"echo-webhook.{pods.namespace}.svc"
    serving = cluster.control_plane.ca.issue(host, dns_names=[host], server=True)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "echo-webhook-tls"},
        "data": {
            "tls.crt": base64.b64encode(serving.cert).decode(),
            "tls.key": base64.b64encode(serving.key).decode(),
        },
    }
    pods.apply(json.dumps(secret))
    pods.apply(WEBHOOK_SERVER.format(image=pods.image))
    pods.wait_running("echo-webhook")
    ca = base64.b64encode(cluster.control_plane.ca.cert).decode()
    cluster.kubectl(
        "apply", "-f", "-", input=WEBHOOK_CONFIG.format(name=webhook_config, namespace=pods.namespace, ca=ca)
    )

    def denied() -> str | None:
        name = f"cm-{uuid.uuid4().hex[:6]}"
        manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{echo: 'yes'}}}}\n"
        result = pods.kubectl("apply", "-f", "-", input=manifest, check=False)
        if result.returncode != 0 and "echo-webhook denied ConfigMap" in result.stderr:
            return name
        pods.kubectl("delete", "configmap", name, "--ignore-not-found", check=False)
        return None

    name = wait_until("the API server to call the webhook", denied, 60, 1.0)
    assert f"echo-webhook denied ConfigMap {pods.namespace}/{name}" in pods.logs("echo-webhook")
    unlabelled = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n"
    pods.kubectl("apply", "-f", "-", input=unlabelled)  # outside the webhook's selector: allowed
