"""Pods really run on the node: a Deployment behind a Service, logs, and an in-memory emptyDir."""

from __future__ import annotations

import http.client
import uuid

from tests.node.conftest import Pods, pod_manifest, wait_until

WEB = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _get(host: str) -> str:
    conn = http.client.HTTPConnection(host, 80, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip()
    finally:
        conn.close()


def test_deployment_pods_run_and_a_service_answers_from_a_pod_and_from_the_test(pods: Pods) -> None:
    pods.apply(WEB.format(image=pods.image))
    pods.kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    names = set(
        pods.kubectl(
            "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"
        ).stdout.split()
    )
    assert len(names) == 2
    for name in names:
        pod = pods.get("pod", name)
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] == "tmpfs-secrets-node"
        assert pod["status"]["podIP"].startswith("10.244.")
    service_ip = pods.get("service", "web")["spec"]["clusterIP"]
    assert service_ip.startswith("10.96.")

    # From the test process: kube-proxy's rules answer the ClusterIP, with one of the pods.
    seen = wait_until("both pods answering through the Service", lambda: _seen(service_ip, names), 60, 0.2)
    assert seen == names

    pods.apply(pod_manifest("client", pods.image, "sleep 3600"))
    pods.wait_running("client")
    # busybox's static wget crashes on name service lookups, so the request is written by hand.
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {service_ip} 80"
    response = pods.exec("client", "sh", "-c", request).stdout
    assert response.startswith("HTTP/1.")
    assert response.strip().splitlines()[-1] in names  # the body: the answering pod's name


_answers: set[str] = set()


def _seen(service_ip: str, names: set[str]) -> set[str] | None:
    try:
        _answers.add(_get(service_ip))
    except OSError:
        return None
    return set(_answers) if names <= _answers else None


def test_kubectl_logs_shows_what_a_container_printed(pods: Pods) -> None:
    marker = uuid.uuid4().hex
    pods.apply(pod_manifest("printer", pods.image, f"echo printed-{marker}; sleep 3600"))
    pods.wait_running("printer")
    logs = wait_until("the container's output", lambda: pods.logs("printer").strip(), 30)
    assert logs == f"printed-{marker}"


def test_an_emptydir_with_medium_memory_is_tmpfs(pods: Pods) -> None:
    volumes = """  volumes:
  - name: scratch
    emptyDir: {medium: Memory}
"""
    mounts = """    volumeMounts:
    - {name: scratch, mountPath: /scratch}
"""
    pods.apply(pod_manifest("scratch", pods.image, "sleep 3600", volumes, mounts))
    pods.wait_running("scratch")
    assert pods.mount_type("scratch", "/scratch") == "tmpfs"
    assert pods.mount_type("scratch", "/") == "overlay"
