"""The chart with `certManager.enabled`: a real cert-manager issues and renews the webhook's
certificate, its cainjector fills the webhook configurations, and the operator serves the renewed
certificate without a restart.

cert-manager's controller and cainjector run as processes next to the cluster (built from their Go
module by `make tools`, tests/cluster/cert_manager.py), only for this module. The chart is
installed as an admin would, with the operator image imported into the node and IRSA against the
emulated AWS; the webhook is then used through its Service by the API server (an opted-in pod is
injected), and seen by a TLS client inside the bubble that trusts only the injected CA. A
`helm upgrade` afterwards must leave cert-manager's Secret and cainjector's caBundle as they are.
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509

from tests.cluster import operator_image
from tests.cluster.aws import MotoServer
from tests.cluster.bubble import NODE_IP
from tests.cluster.cert_manager import CertManager
from tests.cluster.chart import CRD_NAMES, Release, local_values, merge, new_namespace
from tests.cluster.cluster import Cluster
from tests.node.conftest import pod_manifest, wait_until

RELEASE = "tscm"
FULLNAME = f"{RELEASE}-tmpfs-secrets"
CERTIFICATE = f"{FULLNAME}-webhook"  # the serving Certificate
CA_CERTIFICATE = f"{FULLNAME}-webhook-ca"
SECRET = f"{FULLNAME}-webhook-cert-manager-tls"
SERVICE = f"{FULLNAME}-webhook"
NAME = "cm-db"
MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{NAME}"  # the default mount path
REMOTE_KEY = "prod/cert-manager/db"


@dataclass
class Setup:
    cluster: Cluster
    release: Release
    apps: str
    value: str

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check).stdout

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def secret(self, name: str = SECRET) -> dict[str, bytes]:
        data = self.get("-n", self.release.namespace, "secret", name)["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}

    def ca_bundles(self) -> list[bytes]:
        """The caBundle of every webhook of both configurations (b"" where there is none)."""
        out = []
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            for webhook in self.get(kind, FULLNAME)["webhooks"]:
                out.append(base64.b64decode(webhook["clientConfig"].get("caBundle") or ""))
        return out

    def served(self, ca: bytes) -> x509.Certificate:
        """The certificate the webhook Service presents on a new connection, verified with `ca`
        for the Service's DNS name (as the API server verifies it)."""
        service = self.get("-n", self.release.namespace, "service", SERVICE)
        context = ssl.create_default_context(cadata=ca.decode())

        def handshake() -> bytes | None:
            try:
                with (
                    socket.create_connection((service["spec"]["clusterIP"], 443), timeout=5) as raw,
                    context.wrap_socket(
                        raw, server_hostname=f"{SERVICE}.{self.release.namespace}.svc"
                    ) as tls,
                ):
                    return tls.getpeercert(binary_form=True)
            except ConnectionRefusedError:
                return None  # kube-proxy has not programmed the new Service yet

        return x509.load_der_x509_certificate(wait_until("the Service answering TLS", handshake, 30, 0.5))

    def operator_pod(self) -> dict[str, Any]:
        (name,) = self.release.ready_pods()
        return self.get("-n", self.release.namespace, "pod", name)

    def admit(self, pod: str) -> dict[str, Any]:
        """Create an opted-in pod through the API server (which calls the webhook via the Service)."""
        manifest = pod_manifest(pod, self.cluster.image, "sleep 3600").replace(
            f"  labels: {{app: {pod}}}\n",
            f'  labels: {{app: {pod}, tmpfs-secrets.io/inject: "true"}}\n'
            f'  annotations: {{tmpfs-secrets.io/secrets: "{NAME}"}}\n',
        )
        self.kubectl("-n", self.apps, "create", "-f", "-", input=manifest)
        created = self.get("-n", self.apps, "pod", pod)
        volumes = {v["name"]: v for v in created["spec"]["volumes"]}
        assert volumes[f"tmpfs-secrets-{NAME}"]["secret"]["secretName"] == NAME, created["spec"]["volumes"]
        (container,) = created["spec"]["containers"]
        assert {"name": f"tmpfs-secrets-{NAME}", "mountPath": MOUNT, "readOnly": True} in container[
            "volumeMounts"
        ]
        return created

    def read_in_pod(self, pod: str) -> str:
        """The secret's file as the running pod reads it from its injected tmpfs volume."""

        def ready() -> bool:
            conditions = self.get("-n", self.apps, "pod", pod).get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        try:
            wait_until(f"pod {pod} Ready", ready, 120, 0.5)
        except AssertionError:
            described = self.kubectl("-n", self.apps, "describe", "pod", pod, check=False)
            raise AssertionError(f"pod {pod} did not become Ready:\n{described[-3000:]}") from None
        return self.kubectl("-n", self.apps, "exec", pod, "--", "cat", f"{MOUNT}/password")


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return dict(condition)
    return None


@pytest.fixture(scope="module")
def cert_manager(cluster: Cluster) -> Iterator[CertManager]:
    manager = CertManager(cluster.kubeconfig, cluster.control_plane.logs).start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def setup(
    cluster: Cluster, crds: object, moto_session: MotoServer, cert_manager: CertManager
) -> Iterator[Setup]:
    image = operator_image.import_into(cluster.node)
    moto_session.reset()
    pod_aws = MotoServer(host=NODE_IP).start()  # the endpoint pods reach, inside the bubble
    system = new_namespace(cluster, "tmpfs-secrets", "pod-security.kubernetes.io/enforce=restricted")
    apps = new_namespace(cluster, "apps")
    store = f"cm-{uuid.uuid4().hex[:8]}"
    value = "cm-" + uuid.uuid4().hex
    values = merge(local_values(image, pod_aws.endpoint), {"certManager": {"enabled": True}})
    release = Release(cluster, RELEASE, system, values)
    try:
        moto_session.client("secretsmanager").create_secret(
            Name=REMOTE_KEY, SecretString=json.dumps({"password": value})
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
  conditions: [{{namespaces: [{apps}]}}]
---
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {NAME}, namespace: {apps}}}
spec:
  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}
  refreshInterval: 1h
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
""",
        )
        release.adopt_crds(CRD_NAMES)
        release.install()  # the pod starts once cert-manager has issued the Secret it mounts
        yield Setup(cluster, release, apps, value)
    except BaseException:
        print("\n" + cert_manager.log_tails())
        raise
    finally:
        if release.pods() or release.helm("list", "-n", system, "-q").strip():
            print("\n--- operator log:\n" + release.logs()[-3000:])
            release.helm("uninstall", release.name, "-n", system, "--ignore-not-found")
        cluster.kubectl("delete", "clustersecretstore", store, "--ignore-not-found")
        for namespace in (apps, system):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        pod_aws.stop()


def test_cert_manager_issues_the_certificate_and_cainjector_fills_both_webhooks(setup: Setup) -> None:
    ns = setup.release.namespace
    for name in (CA_CERTIFICATE, CERTIFICATE):
        certificate = setup.get("-n", ns, "certificate", name)
        assert (_condition(certificate, "Ready") or {}).get("status") == "True", certificate.get("status")
    # The Secret the operator mounts is cert-manager's, for the Certificate the chart made.
    secret = setup.get("-n", ns, "secret", SECRET)
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == CERTIFICATE
    files = setup.secret()
    ca_files = setup.secret(CA_CERTIFICATE)
    ca = x509.load_pem_x509_certificate(files["ca.crt"])
    leaf = x509.load_pem_x509_certificate(files["tls.crt"])
    assert files["ca.crt"] == ca_files["tls.crt"], "the serving certificate is not signed by the chart's CA"
    assert leaf.issuer == ca.subject and ca.subject == ca.issuer  # CA Issuer under a self-signed CA
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{SERVICE}.{ns}.svc" in names.get_values_for_type(x509.DNSName)

    # cainjector wrote that CA into every webhook of both configurations; the chart wrote none.
    wait_until(
        "the CA in both webhook configurations", lambda: set(setup.ca_bundles()) == {files["ca.crt"]}, 60
    )
    assert len(setup.ca_bundles()) == 2

    # The Service presents exactly that certificate, valid for its name under the injected CA.
    assert setup.served(files["ca.crt"]).serial_number == leaf.serial_number

    # The API server calls the webhook through the Service: an opted-in pod is injected and runs
    # with the synced value in its tmpfs.
    setup.kubectl(
        "-n", setup.apps, "wait", "--for=condition=Ready", "--timeout=90s", f"externalsecret/{NAME}"
    )
    setup.admit("first")
    assert setup.read_in_pod("first") == setup.value


def test_a_renewed_certificate_is_served_without_a_restart(setup: Setup) -> None:
    ns = setup.release.namespace
    before = setup.secret()
    pod = setup.operator_pod()
    old = setup.served(before["ca.crt"])
    revision = int(setup.get("-n", ns, "certificate", CERTIFICATE)["status"].get("revision") or 0)

    # What `cmctl renew` does: mark the Certificate Issuing; cert-manager issues a new certificate
    # (a new key: rotationPolicy Always) into the same Secret.
    certificate = setup.get("-n", ns, "certificate", CERTIFICATE)
    conditions = [c for c in certificate["status"]["conditions"] if c["type"] != "Issuing"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions.append(
        {
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "renewal forced by the test",
            "lastTransitionTime": now,
            "observedGeneration": certificate["metadata"]["generation"],
        }
    )
    patch = json.dumps({"status": {"conditions": conditions}})
    setup.kubectl(
        "-n", ns, "patch", "certificate", CERTIFICATE, "--subresource=status", "--type=merge", "-p", patch
    )

    def renewed() -> bool:
        status = setup.get("-n", ns, "certificate", CERTIFICATE)["status"]
        return int(status.get("revision") or 0) > revision and setup.secret()["tls.crt"] != before["tls.crt"]

    started = time.monotonic()
    wait_until("cert-manager to re-issue the serving certificate", renewed, 90, 0.5)
    issued = time.monotonic() - started
    after = setup.secret()
    new = x509.load_pem_x509_certificate(after["tls.crt"])
    assert new.serial_number != old.serial_number
    assert new.public_key().public_bytes(*_spki()) != old.public_key().public_bytes(*_spki())
    assert after["ca.crt"] == before["ca.crt"]  # same CA: nothing for the API server to relearn

    # The running operator picks the new files up (kubelet updates the mounted Secret in place).
    wait_until(
        "the Service to present the renewed certificate",
        lambda: setup.served(after["ca.crt"]).serial_number == new.serial_number,
        150,
        1.0,
    )
    print(
        f"\n[cert-manager] renewal: issued in {issued:.1f}s, served by the operator "
        f"{time.monotonic() - started:.1f}s after it was triggered"
    )
    now_pod = setup.operator_pod()
    assert now_pod["metadata"]["uid"] == pod["metadata"]["uid"], "the operator pod was replaced"
    assert sum(s["restartCount"] for s in now_pod["status"]["containerStatuses"]) == 0
    assert "webhook certificate reloaded" in setup.release.logs()
    assert set(setup.ca_bundles()) == {after["ca.crt"]}

    # Admissions go on through the Service with the renewed certificate.
    setup.admit("second")
    assert setup.read_in_pod("second") == setup.value


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def test_helm_upgrade_keeps_what_cert_manager_and_cainjector_wrote(setup: Setup) -> None:
    ns = setup.release.namespace
    files = setup.secret()
    bundles = setup.ca_bundles()
    pod = setup.operator_pod()
    setup.release.upgrade()
    assert setup.ca_bundles() == bundles and set(bundles) == {files["ca.crt"]}
    assert setup.secret() == files
    assert setup.operator_pod()["metadata"]["uid"] == pod["metadata"]["uid"]
    served = setup.served(files["ca.crt"])
    assert served.serial_number == x509.load_pem_x509_certificate(files["tls.crt"]).serial_number
    notes = setup.release.helm("get", "notes", setup.release.name, "-n", ns)
    assert f"kubectl -n {ns} get certificate {CERTIFICATE}" in notes
