"""The webhook server over real TLS on loopback: renewed certificate files are served without a
restart, and the probe server reports the refresh loop and the index."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509

from tests.cluster.certs import CertificateAuthority
from tmpfs_secrets.health import HealthServer, parse_address
from tmpfs_secrets.kube.index import Target
from tmpfs_secrets.webhook.server import MUTATE_PODS, Admission, CertificateFiles, WebhookServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def served_serial(port: int, ca: CertificateAuthority) -> int:
    """The serial number of the certificate a fresh connection gets (no SNI: the host is an IP)."""
    context = ssl.create_default_context(cadata=ca.cert.decode())
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return int(x509.load_der_x509_certificate(der).serial_number)


def review(obj: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"kind": "Pod"},
            "operation": "CREATE",
            "namespace": "ns",
            "object": obj,
        },
    }


async def test_renewed_certificate_files_are_served_without_a_restart(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    first = ca.issue("webhook", ip_addresses=["127.0.0.1"], server=True)
    first.write(tmp_path, "tls")
    ready = {"value": False}
    server = WebhookServer(
        Admission(lookup=lambda ns, name: Target(name=name, mount_path="/s"), ready=lambda: ready["value"]),
        CertificateFiles(tmp_path / "tls.crt", tmp_path / "tls.key"),
        "127.0.0.1",
        free_port(),
        reload_interval=0.05,
    )
    await server.start()
    try:
        before = await served_serial(server.port, ca)
        assert before == x509.load_pem_x509_certificate(first.cert).serial_number
        second = ca.issue("webhook", ip_addresses=["127.0.0.1"], server=True)
        second.write(tmp_path, "tls")
        expected = x509.load_pem_x509_certificate(second.cert).serial_number
        for _ in range(200):
            if server.certificates.reloads:
                break
            await asyncio.sleep(0.05)
        assert server.certificates.reloads == 1
        assert await served_serial(server.port, ca) == expected

        # A broken pair (key not written yet) keeps the last good certificate.
        (tmp_path / "tls.key").write_text("not a key")
        assert server.certificates.check() is False
        assert await served_serial(server.port, ca) == expected

        pod = {
            "metadata": {
                "labels": {"tmpfs-secrets.io/inject": "true"},
                "annotations": {"tmpfs-secrets.io/secrets": "a"},
            },
            "spec": {"containers": [{"name": "c"}]},
        }
        context = ssl.create_default_context(cadata=ca.cert.decode())
        async with aiohttp.ClientSession() as http:
            url = f"https://127.0.0.1:{server.port}{MUTATE_PODS}"
            async with http.post(url, json=review(pod), ssl=context) as answer:
                starting = (await answer.json())["response"]
            ready["value"] = True
            async with http.post(url, json=review(pod), ssl=context) as answer:
                admitted = (await answer.json())["response"]
        assert starting["allowed"] is False and "has just started" in starting["status"]["message"]
        assert admitted["allowed"] is True and admitted["patchType"] == "JSONPatch"
        assert server.requests[MUTATE_PODS] == 2 and server.refusals[MUTATE_PODS] == 1
    finally:
        await server.stop()


async def test_probes_report_problems_with_503() -> None:
    problems: dict[str, str | None] = {"loop": "the refresh loop stopped", "index": None}
    health = HealthServer(
        liveness=[lambda: problems["loop"]],
        readiness=[lambda: problems["index"]],
        counts=lambda: {"tmpfs_secrets_webhook_requests_total": {"/mutate-pods": 3}},
    )
    port = free_port()
    await health.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, str]:
                async with http.get(f"http://127.0.0.1:{port}{path}") as answer:
                    return answer.status, await answer.text()

            assert await get("/healthz") == (503, "the refresh loop stopped\n")
            assert await get("/readyz") == (200, "ok\n")
            problems["loop"], problems["index"] = None, "not read yet"
            assert (await get("/healthz"))[0] == 200
            assert (await get("/readyz"))[0] == 503
            status, metrics = await get("/metrics")
            assert status == 200 and 'tmpfs_secrets_webhook_requests_total{route="/mutate-pods"} 3' in metrics
    finally:
        await health.stop()


def test_addresses() -> None:
    assert parse_address("0.0.0.0:8081") == ("0.0.0.0", 8081)
    assert parse_address(":9443") == ("0.0.0.0", 9443)
    assert parse_address("[::]:1") == ("::", 1)
    for bad in ("x", "1:99999"):
        try:
            parse_address(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    assert json.dumps(parse_address("8080")) == '["0.0.0.0", 8080]'
