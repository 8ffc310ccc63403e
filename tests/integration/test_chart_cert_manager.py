"""The chart's cert-manager mode (`certManager.enabled`), as `helm template` renders it.

The node test (tests/node/test_cert_manager.py) shows the same objects working with a real
cert-manager; these tests pin what the chart asks of it: the CA chain, the names the serving
certificate covers, the Secret the operator mounts, and cainjector's annotation in place of a
caBundle. They also show which values the chart refuses and why.
"""

from __future__ import annotations

from typing import Any

from tests.cluster import binaries
from tests.integration.test_chart import CHART, helm_fails, render

NS = "tmpfs-secrets"


def _objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _webhook_configurations(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    ]


def _mounted_secret(docs: list[dict[str, Any]]) -> str:
    (deployment,) = _objects(docs, "Deployment").values()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "webhook-tls", "mountPath": "/tls", "readOnly": True} in container["volumeMounts"]
    assert "--webhook-cert-dir=/tls" in container["args"]
    secret_name: str = {v["name"]: v for v in pod["volumes"]}["webhook-tls"]["secret"]["secretName"]
    return secret_name


def test_cert_manager_mode_renders_a_ca_chain_and_a_serving_certificate_for_the_service() -> None:
    docs = render("ops", NS, "certManager.enabled=true")

    # No certificate of the chart's own: no Secret at all, no caBundle in either configuration.
    assert not _objects(docs, "Secret")
    configurations = _webhook_configurations(docs)
    assert len(configurations) == 2
    for configuration in configurations:
        annotations = configuration["metadata"]["annotations"]
        assert annotations == {"cert-manager.io/inject-ca-from": f"{NS}/ops-tmpfs-secrets-webhook"}
        for webhook in configuration["webhooks"]:
            assert "caBundle" not in webhook["clientConfig"]
            assert webhook["clientConfig"]["service"]["name"] == "ops-tmpfs-secrets-webhook"

    certificates = _objects(docs, "Certificate")
    issuers = _objects(docs, "Issuer")
    assert sorted(certificates) == ["ops-tmpfs-secrets-webhook", "ops-tmpfs-secrets-webhook-ca"]
    assert sorted(issuers) == ["ops-tmpfs-secrets-webhook-ca", "ops-tmpfs-secrets-webhook-selfsigned"]
    for obj in (*certificates.values(), *issuers.values()):
        assert obj["apiVersion"] == "cert-manager.io/v1"
        assert obj["metadata"]["namespace"] == NS
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "ops"

    # self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
    ca = certificates["ops-tmpfs-secrets-webhook-ca"]["spec"]
    assert issuers["ops-tmpfs-secrets-webhook-selfsigned"]["spec"] == {"selfSigned": {}}
    assert ca["isCA"] is True
    assert ca["issuerRef"] == {
        "name": "ops-tmpfs-secrets-webhook-selfsigned",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert ca["privateKey"]["rotationPolicy"] == "Never"  # a renewed CA still verifies what it signed
    assert issuers["ops-tmpfs-secrets-webhook-ca"]["spec"] == {"ca": {"secretName": ca["secretName"]}}

    serving = certificates["ops-tmpfs-secrets-webhook"]["spec"]
    assert serving["issuerRef"] == {
        "name": "ops-tmpfs-secrets-webhook-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    # The webhook's Service and Direct delivery's, whose agents verify the same certificate.
    assert serving["dnsNames"] == [
        f"ops-tmpfs-secrets-webhook.{NS}.svc",
        f"ops-tmpfs-secrets-webhook.{NS}.svc.cluster.local",
        f"ops-tmpfs-secrets-direct.{NS}.svc",
        f"ops-tmpfs-secrets-direct.{NS}.svc.cluster.local",
    ]
    assert "ipAddresses" not in serving
    assert "server auth" in serving["usages"]
    assert (serving["duration"], serving["renewBefore"]) == ("2160h", "720h")
    assert (ca["duration"], ca["renewBefore"]) == ("87600h", "8760h")
    assert serving["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    assert ca["secretName"] != serving["secretName"]

    # The operator mounts what cert-manager writes, at the path its reloader watches.
    assert _mounted_secret(docs) == serving["secretName"] == "ops-tmpfs-secrets-webhook-cert-manager-tls"
    assert {s["metadata"]["name"] for s in _objects(docs, "Service").values()} >= {
        "ops-tmpfs-secrets-webhook"
    }


def test_cert_manager_mode_uses_an_existing_issuer_instead_of_its_own_ca() -> None:
    docs = render(
        "ops",
        NS,
        "certManager.enabled=true",
        "certManager.issuerRef.name=platform-ca",
        "certManager.issuerRef.kind=ClusterIssuer",
        "certManager.duration=720h",
        "certManager.renewBefore=240h",
        "certManager.privateKey.algorithm=RSA",
        "certManager.privateKey.size=3072",
    )
    assert not _objects(docs, "Issuer")
    (serving,) = _objects(docs, "Certificate").values()
    assert serving["spec"]["issuerRef"] == {
        "name": "platform-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert (serving["spec"]["duration"], serving["spec"]["renewBefore"]) == ("720h", "240h")
    assert (
        serving["spec"]["privateKey"]["algorithm"] == "RSA" and serving["spec"]["privateKey"]["size"] == 3072
    )
    for configuration in _webhook_configurations(docs):
        assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NS}/{serving['metadata']['name']}"
        )

    # Direct's fixed ClusterIP is named too (agents may dial it); without Direct, only the webhook.
    (direct_ip,) = _objects(
        render("ops", NS, "certManager.enabled=true", "direct.service.clusterIP=10.0.0.77"), "Certificate"
    )["ops-tmpfs-secrets-webhook"]["spec"]["ipAddresses"]
    assert direct_ip == "10.0.0.77"
    no_direct = _objects(render("ops", NS, "certManager.enabled=true", "direct.enabled=false"), "Certificate")
    assert no_direct["ops-tmpfs-secrets-webhook"]["spec"]["dnsNames"] == [
        f"ops-tmpfs-secrets-webhook.{NS}.svc",
        f"ops-tmpfs-secrets-webhook.{NS}.svc.cluster.local",
    ]

    external = render(
        "ops",
        NS,
        "certManager.enabled=true",
        "certManager.issuerRef.name=pca",
        "certManager.issuerRef.kind=AWSPCAClusterIssuer",
        "certManager.issuerRef.group=awspca.cert-manager.io",
    )
    (serving,) = _objects(external, "Certificate").values()
    assert serving["spec"]["issuerRef"] == {
        "name": "pca",
        "kind": "AWSPCAClusterIssuer",
        "group": "awspca.cert-manager.io",
    }


def test_default_mode_keeps_the_charts_certificate_without_cert_manager_objects() -> None:
    docs = render("ops", NS)
    assert not _objects(docs, "Certificate") and not _objects(docs, "Issuer")
    (secret,) = _objects(docs, "Secret").values()
    assert _mounted_secret(docs) == secret["metadata"]["name"] == "ops-tmpfs-secrets-webhook-tls"
    for configuration in _webhook_configurations(docs):
        assert "annotations" not in configuration["metadata"]
        for webhook in configuration["webhooks"]:
            assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


def test_cert_manager_values_are_checked() -> None:
    base = [
        "template",
        "r",
        str(CHART),
        "--kube-version",
        binaries.K8S_VERSION,
        "--set",
        "certManager.enabled=true",
    ]
    assert "exclude each other" in helm_fails(*base, "--set", "webhook.certificate.secretName=mine")
    assert "needs webhook.enabled" in helm_fails(*base, "--set", "webhook.enabled=false")
    assert "/certManager/duration" in helm_fails(*base, "--set", "certManager.duration=90d")
    assert "/certManager/ca/renewBefore" in helm_fails(*base, "--set", "certManager.ca.renewBefore=1y")
    assert "its name is empty" in helm_fails(*base, "--set", "certManager.issuerRef.kind=ClusterIssuer")
    assert "additional properties 'namespace' not allowed" in helm_fails(
        *base, "--set", "certManager.issuerRef.name=x", "--set", "certManager.issuerRef.namespace=y"
    )
    assert "/certManager/privateKey/algorithm" in helm_fails(
        *base, "--set", "certManager.privateKey.algorithm=DSA"
    )
    # Your own Secret still needs the CA that signed it (the API server must trust the webhook).
    plain = ["template", "r", str(CHART), "--kube-version", binaries.K8S_VERSION]
    assert "needs webhook.certificate.caBundle" in helm_fails(
        *plain, "--set", "webhook.certificate.secretName=mine"
    )
