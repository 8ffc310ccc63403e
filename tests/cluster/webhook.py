"""The operator's admission webhooks, routed the way the chart routes them, on the bubble cluster.

The operator runs as a process in the bubble's network, listening on the node address
(10.244.0.1). A selectorless Service in the operator's namespace with an EndpointSlice pointing at
that address stands in for the chart's Service over the operator's pod, so kube-apiserver calls
the webhook through a real Service (ClusterIP, kube-proxy), with a serving certificate for the
Service's DNS name signed by the cluster's CA. The webhook configurations are cluster-scoped:
`uninstall()` removes them, and tests use the `operator_webhook` fixture, which always does.

    hook = OperatorWebhook.create(cluster.control_plane, workdir)
    operator = Operator(env, log, args=[*hook.operator_args(), ...])
    hook.install(); ...; hook.uninstall()
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.cluster.bubble import NODE_IP
from tests.cluster.certs import CertificateAuthority

NAMESPACE = "tmpfs-secrets"  # the operator's own namespace, excluded from the webhooks
SERVICE = "tmpfs-secrets-webhook"
INJECT = "inject.pods.tmpfs-secrets.io"
VALIDATE = "validate.tmpfs-secrets.io"
TIMEOUT_SECONDS = 5


class KubeApi(Protocol):
    ca: CertificateAuthority

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def configurations(
    name: str, namespace: str, service: str, ca_bundle: str, excluded: list[str]
) -> list[dict[str, Any]]:
    """The Mutating- and ValidatingWebhookConfiguration, as the chart renders them."""
    namespaces = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}]
    }
    common = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "namespaceSelector": namespaces,
    }

    def client(path: str) -> dict[str, Any]:
        return {
            "service": {"name": service, "namespace": namespace, "path": path, "port": 443},
            "caBundle": ca_bundle,
        }

    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": INJECT,
                    "clientConfig": client("/mutate-pods"),
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                            "operations": ["CREATE"],
                            "scope": "Namespaced",
                        }
                    ],
                    "objectSelector": {"matchLabels": {"tmpfs-secrets.io/inject": "true"}},
                    "failurePolicy": "Fail",
                    "reinvocationPolicy": "IfNeeded",
                    **common,
                }
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": VALIDATE,
                    "clientConfig": client("/validate"),
                    "rules": [
                        {
                            "apiGroups": ["tmpfs-secrets.io"],
                            "apiVersions": ["v1alpha1"],
                            "resources": ["externalsecrets", "secretstores", "clustersecretstores"],
                            "operations": ["CREATE", "UPDATE"],
                        }
                    ],
                    "failurePolicy": "Ignore",
                    **common,
                }
            ],
        },
    ]


@dataclass
class OperatorWebhook:
    api: KubeApi
    cert_dir: Path
    port: int
    health_port: int
    name: str = field(default_factory=lambda: f"tmpfs-secrets-{uuid.uuid4().hex[:8]}")

    @classmethod
    def create(cls, api: KubeApi, workdir: Path) -> OperatorWebhook:
        """Serving certificate for the Service's names and two free ports; nothing on the cluster yet."""
        cert_dir = workdir / "webhook-tls"
        pair = api.ca.issue(
            SERVICE,
            dns_names=[f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local"],
            server=True,
        )
        pair.write(cert_dir, "tls")
        return cls(api, cert_dir, free_port(), free_port())

    def operator_args(self) -> list[str]:
        return [
            f"--webhook-cert-dir={self.cert_dir}",
            f"--webhook-address=0.0.0.0:{self.port}",
            f"--health-address=127.0.0.1:{self.health_port}",
        ]

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def manifests(self) -> list[dict[str, Any]]:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": self.port, "protocol": "TCP"}]},
        }
        endpoints = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-node",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
        }
        bundle = base64.b64encode(self.api.ca.cert).decode()
        return [
            service,
            endpoints,
            *configurations(self.name, NAMESPACE, SERVICE, bundle, ["kube-system", NAMESPACE]),
        ]

    def install(self) -> None:
        self.api.kubectl("create", "namespace", NAMESPACE, check=False)
        text = yaml.safe_dump_all(self.manifests())
        self.api.kubectl("apply", "-f", "-", input=text)

    def uninstall(self) -> None:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            self.api.kubectl("delete", kind, self.name, "--ignore-not-found", check=False)
        for kind, name in (("endpointslice", f"{SERVICE}-node"), ("service", SERVICE)):
            self.api.kubectl("delete", "-n", NAMESPACE, kind, name, "--ignore-not-found", check=False)

    def wait_effective(self, namespace: str, timeout: float = 60.0) -> None:
        wait_injecting(self.api, namespace, timeout)


class Kubectl(Protocol):
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any: ...


def wait_injecting(api: Kubectl, namespace: str, timeout: float = 60.0) -> None:
    """Until a server-side dry run of an opted-in pod in `namespace` comes back injected (whoever
    serves the webhook: the operator as a process or installed by its chart)."""
    canary = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "webhook-canary",
            "labels": {"tmpfs-secrets.io/inject": "true"},
            "annotations": {"tmpfs-secrets.io/secrets": "webhook-canary"},
        },
        # Admissible under the `restricted` profile too, so the dry run reaches the webhook.
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "none",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = api.kubectl(
            "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(canary), check=False,
        )  # fmt: skip
        if out.returncode == 0 and "tmpfs-secrets-webhook-canary" in out.stdout:
            return
        last = out.stderr or out.stdout
        time.sleep(0.5)
    raise TimeoutError(f"the webhook did not take effect within {timeout:.0f}s: {last[-500:]}")
