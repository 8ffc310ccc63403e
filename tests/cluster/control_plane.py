"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Started with generated certificates, RBAC, a ServiceAccount issuer and signing key (so
TokenRequest and TokenReview work) and the admission webhooks on. The API server never sends
traffic anywhere but loopback: its endpoint reconciler is `none`, so its advertise address (an
address of the TEST-NET-1 documentation range) is never contacted. The bubble cluster reuses this
class with other options (see `Options`).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import binaries
from tests.cluster.certs import CertificateAuthority, KeyPair, service_account_key
from tests.cluster.processes import Process, free_port, wait_for

READY_TIMEOUT = 90.0
# The identity tests and benchmarks give the operator, so the audit log can count its requests.
OPERATOR_USER = "tmpfs-secrets-operator"
# Only the operator's requests are audited, one line each when they complete (a watch: when it ends).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


@dataclass
class Options:
    """How the control plane is wired; the defaults are for a loopback-only control plane."""

    bind_address: str = "127.0.0.1"
    # Never contacted: with the `none` endpoint reconciler nothing is ever sent to it.
    advertise_address: str = "192.0.2.1"
    endpoint_reconciler: str = "none"
    service_cidr: str = "10.0.0.0/24"
    authorization_modes: str = "RBAC"
    serving_ips: list[str] = field(default_factory=list)  # extra IP SANs for the serving certificate
    apiserver_args: list[str] = field(default_factory=list)
    controller_manager_args: list[str] = field(default_factory=list)


def _tls_context(ca: bytes, client: KeyPair | None, workdir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.decode())
    if client is not None:
        crt, key = client.write(workdir / "probe", "probe")
        ctx.load_cert_chain(crt, key)
    return ctx


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """True when `url` answers 200; the connection is always closed (unclosed sockets fail tests)."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    finally:
        conn.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager with their data and logs in one folder."""

    def __init__(self, workdir: Path | None = None, options: Options | None = None) -> None:
        self.options = options or Options()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tmpfs-secrets-cluster-"))
        self.logs = self.workdir / "logs"
        self.pki = self.workdir / "pki"
        self.ca = CertificateAuthority()
        self.admin = self.ca.issue("admin", organizations=["system:masters"], client=True)
        self.etcd_port = free_port()
        self.api_port = free_port()
        self.kcm_port = free_port()
        self.api_url = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.audit_log = self.logs / "audit.log"
        # The operator authenticates with a bearer token, as it does in a pod (the API server caches
        # a token's authentication; a client certificate's chain is verified on every request).
        self.operator_token = secrets.token_urlsafe(32)
        self.processes: list[Process] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def stop(self, keep_logs: bool = False) -> Path | None:
        """Stop every component; with `keep_logs`, save the logs and return where they went."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        kept = None
        if keep_logs and self.logs.exists():
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            kept = binaries.cache_root() / "test-logs" / f"{stamp}-{os.getpid()}"
            shutil.copytree(self.logs, kept, dirs_exist_ok=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return kept

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        kept = self.stop(keep_logs=exc_type is not None)
        if kept:
            print(f"control plane logs kept in {kept}")

    # --- components ------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str | os.PathLike[str]]) -> Process:
        proc = Process(name, argv, self.logs / f"{name}.log").start()
        self.processes.append(proc)
        return proc

    def _start_etcd(self) -> None:
        peer = free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                binaries.path("etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        wait_for(
            "etcd",
            lambda: _etcd_healthy(client_url),
            READY_TIMEOUT,
            0.2,
            proc,
        )

    def _start_apiserver(self) -> None:
        opts = self.options
        first_service_ip = _first_ip(opts.service_cidr)
        ips = ["127.0.0.1", first_service_ip, *opts.serving_ips]
        serving = self.ca.issue(
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=list(dict.fromkeys(ips)),
            server=True,
        )
        crt, key = serving.write(self.pki, "apiserver")
        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.operator_token},{OPERATOR_USER},{OPERATOR_USER},"system:masters"\n')
        tokens.chmod(0o600)
        ca_file = self.pki / "ca.crt"
        ca_file.write_bytes(self.ca.cert)
        sa_private, sa_public = service_account_key()
        (self.pki / "sa.key").write_bytes(sa_private)
        (self.pki / "sa.pub").write_bytes(sa_public)
        self.admin.write(self.pki, "admin")
        proc = self._spawn(
            "kube-apiserver",
            [
                binaries.path("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={opts.bind_address}",
                f"--secure-port={self.api_port}",
                f"--advertise-address={opts.advertise_address}",
                f"--endpoint-reconciler-type={opts.endpoint_reconciler}",
                f"--tls-cert-file={crt}",
                f"--tls-private-key-file={key}",
                f"--client-ca-file={ca_file}",
                f"--service-cluster-ip-range={opts.service_cidr}",
                f"--authorization-mode={opts.authorization_modes}",
                "--allow-privileged=true",
                f"--service-account-issuer={self.api_url}",
                f"--service-account-key-file={self.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                f"--token-auth-file={tokens}",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--v=1",
                *opts.apiserver_args,
            ],
        )
        ctx = _tls_context(self.ca.cert, self.admin, self.workdir)
        wait_for(
            "kube-apiserver",
            lambda: http_ok(f"{self.api_url}/readyz", ctx),
            READY_TIMEOUT,
            0.3,
            proc,
        )
        self._write_kubeconfig(self.kubeconfig, self.admin)

    def _start_controller_manager(self) -> None:
        client = self.ca.issue("system:kube-controller-manager", client=True)
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self._write_kubeconfig(kubeconfig, client)
        proc = self._spawn(
            "kube-controller-manager",
            [
                binaries.path("kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-key-file={self._ca_key_file()}",
                f"--service-cluster-ip-range={self.options.service_cidr}",
                "--use-service-account-credentials=true",
                "--profiling=false",
                "--v=1",
                *self.options.controller_manager_args,
            ],
        )
        insecure = ssl.create_default_context()
        # kube-controller-manager serves with a self-signed certificate of its own on loopback.
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        wait_for(
            "kube-controller-manager",
            lambda: http_ok(f"https://127.0.0.1:{self.kcm_port}/healthz", insecure),
            READY_TIMEOUT,
            0.3,
            proc,
        )

    def _ca_key_file(self) -> Path:
        path = self.pki / "ca.key"
        path.write_bytes(self.ca.pair.key)
        path.chmod(0o600)
        return path

    # --- clients ---------------------------------------------------------------------------------

    def _write_kubeconfig(
        self, path: Path, client: KeyPair | None, user: str = "admin", token: str | None = None
    ) -> None:
        credentials = (
            {"token": token}
            if client is None
            else {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)}
        )
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.api_url, "certificate-authority-data": _b64(self.ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": credentials,
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for a user authenticated by a client certificate (CN=user, O=groups)."""
        path = self.workdir / f"{user.replace(':', '_')}.kubeconfig"
        self._write_kubeconfig(path, self.ca.issue(user, organizations=groups, client=True), user)
        return path

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def operator_kubeconfig(self) -> Path:
        """A cluster-admin kubeconfig for the operator under its own name (`OPERATOR_USER`), whose
        requests the audit log records; a bearer token, as a pod's ServiceAccount has."""
        path = self.workdir / f"{OPERATOR_USER}.kubeconfig"
        self._write_kubeconfig(path, None, OPERATOR_USER, token=self.operator_token)
        return path

    def operator_requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The operator's requests audited since byte offset `since` (see `audit_offset`): dicts
        with verb, resource, subresource, namespace, name and code."""
        if not self.audit_log.exists():
            return []
        out = []
        with self.audit_log.open("rb") as f:
            f.seek(since)
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line still being written
                if (event.get("user") or {}).get("username") != OPERATOR_USER:
                    continue
                ref = event.get("objectRef") or {}
                out.append(
                    {
                        "verb": event.get("verb", ""),
                        "resource": ref.get("resource", ""),
                        "subresource": ref.get("subresource", ""),
                        "namespace": ref.get("namespace", ""),
                        "name": ref.get("name", ""),
                        "code": (event.get("responseStatus") or {}).get("code", 0),
                    }
                )
        return out

    def audit_offset(self) -> int:
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps the data); `start_apiserver_again` brings it back."""
        self._apiserver().stop()

    def start_apiserver_again(self) -> None:
        proc = self._apiserver()
        proc.start()
        ctx = _tls_context(self.ca.cert, self.admin, self.workdir)
        wait_for("kube-apiserver", lambda: http_ok(f"{self.api_url}/readyz", ctx), READY_TIMEOUT, 0.3, proc)

    def _apiserver(self) -> Process:
        return next(p for p in self.processes if p.name == "kube-apiserver")

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binaries.path("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result


def _etcd_healthy(client_url: str) -> bool:
    parts = urllib.parse.urlsplit(client_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=2)
    try:
        conn.request("GET", "/health")
        return bool(json.loads(conn.getresponse().read())["health"] == "true")
    finally:
        conn.close()


def _first_ip(cidr: str) -> str:
    import ipaddress

    return str(next(ipaddress.ip_network(cidr).hosts()))
