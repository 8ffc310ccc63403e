"""Direct delivery against the real API server: the operator's endpoint, TokenReview with real
pod-bound tokens, the real agent writing files, and nothing of the values in the API server.

Pods here are API objects only (no node): their projected tokens come from TokenRequest bound to
them, exactly what kubelet asks for. tests/node/ runs the agent inside pods.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.cluster.aws import MotoServer
from tests.cluster.certs import CertificateAuthority
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env
from tests.integration.conftest import Kube, Shop, apply_examples, wait_until
from tmpfs_secrets.agent.run import Agent
from tmpfs_secrets.agent.token import TokenFile
from tmpfs_secrets.agent.writer import AtomicWriter

AUDIENCE = "tmpfs-secrets.io"


def _direct_es(name: str, interval: str = "2s") -> str:
    return f"""
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: aws-secrets}}
  refreshInterval: {interval}
  data:
    - secretKey: RDS_PASSWORD
      remoteRef: {{key: prod/shop/db, property: password}}
  target: {{delivery: Direct}}
  mount: {{defaultMode: 0400}}
"""


@dataclass
class Endpoint:
    operator: Operator
    url: str
    context: ssl.SSLContext
    port: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def endpoint(
    control_plane: ControlPlane,
    aws: MotoServer,
    crds: Path,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Endpoint]:
    ca = CertificateAuthority()
    ca.issue("operator", dns_names=["localhost"], server=True).write(tmp_path / "tls", "tls")
    port = _free_port()
    args = ["--namespace", namespace, "--namespace", other_namespace]
    args += [f"--webhook-cert-dir={tmp_path / 'tls'}", f"--webhook-address=127.0.0.1:{_free_port()}"]
    args += [f"--direct-address=127.0.0.1:{port}"]
    op = Operator(env=operator_env(control_plane, aws), log=tmp_path / "operator.log", args=args)
    op.start()
    try:
        yield Endpoint(
            op, f"https://localhost:{port}", ssl.create_default_context(cadata=ca.cert.decode()), port
        )
    finally:
        op.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print("\n--- operator log:\n" + "\n".join(op.log_text().splitlines()[-80:]))


def _pod(core: k8s.CoreV1Api, namespace: str, name: str, secrets: str | None) -> k8s.V1Pod:
    if not _exists(core, namespace, "app"):
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
        )
    annotations = {"tmpfs-secrets.io/secrets": secrets} if secrets is not None else None
    body = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, annotations=annotations),
        spec=k8s.V1PodSpec(
            service_account_name="app",
            automount_service_account_token=False,
            containers=[k8s.V1Container(name="app", image="app:unused")],
        ),
    )
    return core.create_namespaced_pod(namespace, body)


def _exists(core: k8s.CoreV1Api, namespace: str, name: str) -> bool:
    return any(sa.metadata.name == name for sa in core.list_namespaced_service_account(namespace).items)


def _token(core: k8s.CoreV1Api, pod: k8s.V1Pod, audience: str = AUDIENCE) -> str:
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(
            audiences=[audience],
            expiration_seconds=600,
            bound_object_ref=k8s.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
    )
    answer = core.create_namespaced_service_account_token("app", pod.metadata.namespace, request)
    return str(answer.status.token)


def _agent(endpoint: Endpoint, tmp_path: Path, token: str, names: dict[str, Path], tag: str) -> Agent:
    token_file = tmp_path / f"token-{tag}"
    token_file.write_text(token)
    return Agent(
        endpoint.url,
        endpoint.context,
        TokenFile(str(token_file)),
        {name: AtomicWriter(folder) for name, folder in names.items()},
        backoff_base=0.1,
        backoff_cap=0.5,
    )


@pytest.fixture
def running() -> Iterator[Callable[[Agent], Agent]]:
    agents: list[tuple[Agent, threading.Thread]] = []

    def start(agent: Agent) -> Agent:
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        agents.append((agent, thread))
        return agent

    yield start
    for agent, thread in agents:
        agent.close()
        thread.join(20)


def test_values_reach_the_agent_never_the_api_server(
    endpoint: Endpoint,
    shop: Shop,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    control_plane: ControlPlane,
    tmp_path: Path,
    running: Callable[[Agent], Agent],
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_direct_es("shop-db"), namespace=namespace)
    status = kube.wait_ready("shop-db", namespace, status="False", reason="AwaitingPods")
    assert "no pod streams it yet" in status["message"]

    core = kube.core
    pods = [_pod(core, namespace, f"app-{i}", "shop-db,other") for i in range(2)]
    folders = [tmp_path / f"pod-{i}" / "shop-db" for i in range(2)]
    for i, pod in enumerate(pods):
        running(_agent(endpoint, tmp_path, _token(core, pod), {"shop-db": folders[i]}, str(i)))
    for folder in folders:
        wait_until("the agent's files", lambda f=folder: (f / "RDS_PASSWORD").exists(), timeout=30)  # type: ignore[misc]
        assert (folder / "RDS_PASSWORD").read_text() == shop.values["RDS_PASSWORD"]
        assert oct((folder / "RDS_PASSWORD").stat().st_mode & 0o777) == oct(0o400)
    ready = kube.wait_ready("shop-db", namespace, reason="Delivered", timeout=30)
    assert "all 2 connected pods" in ready["message"]
    es = kube.get("ExternalSecret", "shop-db", namespace)
    assert es is not None and es["status"]["direct"] == {"podsCurrent": 2, "podsStale": 0}

    new = shop.rotate_password()
    for folder in folders:
        wait_until(
            "the rotated value in every pod's files",
            lambda f=folder: (f / "RDS_PASSWORD").read_text() == new,  # type: ignore[misc]
            timeout=30,
        )
    # Every later status shows both pods on the new content once they acknowledged it.
    wait_until(
        "the status to count both pods on the new content",
        lambda: (
            (s := (kube.get("ExternalSecret", "shop-db", namespace) or {}).get("status", {}))
            and s.get("direct") == {"podsCurrent": 2, "podsStale": 0}
            and s["conditions"][0]["reason"] == "Delivered"
            and s["contentHash"] != es["status"]["contentHash"]
        ),
        timeout=30,
    )

    # No Secret was written, and the values are nowhere in the API server.
    assert kube.secret("shop-db", namespace) is None
    everything = control_plane.kubectl("get", "secrets,configmaps,events", "-A", "-o", "json").stdout
    everything += control_plane.kubectl("get", "externalsecrets,secretstores", "-A", "-o", "json").stdout
    everything += endpoint.operator.log_text()
    for value in (shop.values["RDS_PASSWORD"], new):
        assert value not in everything


def test_refusals_name_the_reason_never_the_token(
    endpoint: Endpoint,
    shop: Shop,
    namespace: str,
    other_namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    tmp_path: Path,
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_direct_es("shop-db"), namespace=namespace)
    apply_yaml(
        _direct_es("plain").replace("target: {delivery: Direct}", "target: {delivery: Secret}"),
        namespace=namespace,
    )
    kube.wait_ready("shop-db", namespace, status="False", reason="AwaitingPods")
    core = kube.core
    foreign = _pod(core, other_namespace, "foreign", "shop-db")  # names it, but it lives elsewhere
    unnamed = _pod(core, namespace, "unnamed", "something-else")
    named = _pod(core, namespace, "named", "shop-db,plain")
    cases = {
        "other namespace": (_token(core, foreign), "shop-db", 404, "NotFound"),
        "not named": (_token(core, unnamed), "shop-db", 403, "NotNamed"),
        "wrong audience": (
            _token(core, named, audience="sts.amazonaws.com"),
            "shop-db",
            401,
            "WrongAudience",
        ),
        "garbage token": ("not-a-token." + uuid.uuid4().hex, "shop-db", 401, "InvalidToken"),
        "Secret delivery": (_token(core, named), "plain", 403, "NotDirect"),
    }
    tokens = []
    for what, (token, name, status, reason) in cases.items():
        tokens.append(token)
        agent = _agent(endpoint, tmp_path, token, {name: tmp_path / what / name}, what.replace(" ", "-"))
        with pytest.raises(Exception) as refused:
            agent.stream_once()
        assert getattr(refused.value, "status", None) == status, (what, refused.value)
        assert reason in str(refused.value), (what, refused.value)
        assert not (tmp_path / what / name).exists()
    # A forged token whose claims look fine is refused by TokenReview.
    real = _token(core, named)
    header, claims, _ = real.split(".")
    forged = f"{header}.{claims}.{'A' * 40}"
    tokens.append(forged)
    agent = _agent(endpoint, tmp_path, forged, {"shop-db": tmp_path / "forged"}, "forged")
    with pytest.raises(Exception) as refused:
        agent.stream_once()
    assert getattr(refused.value, "status", None) == 401 and "TokenRejected" in str(refused.value)

    log = endpoint.operator.log_text()
    assert log.count("refused an agent stream") >= len(cases) + 1
    for token in [*tokens, real]:
        assert token not in log
        assert token.split(".")[-1] not in log  # not even the signature


def test_expired_token_is_refused_before_review(kube: Kube, namespace: str) -> None:
    """The operator's own check of the expiry, with a real token and a clock past its end."""
    import asyncio

    from tmpfs_secrets.direct.auth import Refusal, TokenVerifier

    core = kube.core
    token = _token(core, _pod(core, namespace, "late", "shop-db"))

    class NoReviews:
        async def post(self, path: str, body: object) -> dict[str, object]:
            raise AssertionError("an expired token must be refused without a TokenReview")

    verifier = TokenVerifier(NoReviews(), clock=lambda: time.time() + 3600)  # type: ignore[arg-type]
    with pytest.raises(Refusal) as refused:
        asyncio.run(verifier.verify(token))
    assert refused.value.reason == "TokenExpired" and token not in str(refused.value)


def test_a_stuck_or_garbage_client_blocks_nobody(
    endpoint: Endpoint,
    shop: Shop,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    tmp_path: Path,
    running: Callable[[Agent], Agent],
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_direct_es("shop-db"), namespace=namespace)
    kube.wait_ready("shop-db", namespace, status="False", reason="AwaitingPods")
    core = kube.core
    stuck_pod, good_pod = _pod(core, namespace, "stuck", "shop-db"), _pod(core, namespace, "good", "shop-db")

    # A client that opens a stream and never reads it, and one that sends garbage and hangs.
    raw = socket.create_connection(("127.0.0.1", endpoint.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck = endpoint.context.wrap_socket(raw, server_hostname="localhost")
    stuck.sendall(
        f"GET /v1/stream?secrets=shop-db HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
        f"{_token(core, stuck_pod)}\r\n\r\n".encode()
    )
    garbage = endpoint.context.wrap_socket(
        socket.create_connection(("127.0.0.1", endpoint.port)), server_hostname="localhost"
    )
    garbage.sendall(b"\x16\x03\x01 this is not HTTP at all\r\n")
    half = socket.create_connection(("127.0.0.1", endpoint.port))  # TCP only, no TLS handshake
    try:
        folder = tmp_path / "good" / "shop-db"
        running(_agent(endpoint, tmp_path, _token(core, good_pod), {"shop-db": folder}, "good"))
        wait_until("the good agent's files", lambda: (folder / "RDS_PASSWORD").exists(), timeout=30)
        for _ in range(3):
            new = shop.rotate_password()
            wait_until(
                "each rotation at the good agent",
                lambda v=new: (folder / "RDS_PASSWORD").read_text() == v,
                timeout=30,  # type: ignore[misc]
            )
        # The status counts the stuck pod as not holding the current content, never as delivered.
        wait_until(
            "the status to count the stuck pod as stale",
            lambda: (
                ((kube.get("ExternalSecret", "shop-db", namespace) or {}).get("status") or {}).get("direct")
                == {"podsCurrent": 1, "podsStale": 1}
            ),
            timeout=30,
        )
        assert kube.ready("ExternalSecret", "shop-db", namespace)["reason"] == "AwaitingPods"  # type: ignore[index]
    finally:
        for s in (stuck, garbage, half):
            s.close()
    assert json.dumps(shop.values["RDS_PASSWORD"]) not in endpoint.operator.log_text()
