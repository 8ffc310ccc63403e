"""Shared fixtures: emulated AWS (moto over HTTP), the real local control plane, a namespace per test,
the project's CRDs and the operator as a process (the sync tests and the pod tests both use them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.cluster import bubble
from tests.cluster.aws import MotoServer, moto_server
from tests.cluster.cluster import Cluster
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env

CRDS = Path(__file__).resolve().parents[1] / "crds"


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws(moto_session: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """An empty emulated AWS for this test; botocore in this process is pointed at it."""
    moto_session.reset()
    for key, value in moto_session.env().items():
        monkeypatch.setenv(key, value)
    return moto_session


class _Stoppable(Protocol):
    def stop(self, keep_logs: bool = False) -> Path | None: ...


_T = TypeVar("_T", bound=_Stoppable)


def _for_the_session(started: _T, request: pytest.FixtureRequest, what: str) -> Iterator[_T]:
    """Yield `started`, then stop it, keeping its logs when a test of the run failed."""
    try:
        yield started
    finally:
        kept = started.stop(keep_logs=request.session.testsfailed > 0)
        if kept:
            print(f"\n{what} logs kept in {kept}")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The whole cluster (control plane and a real node) in the bubble, for the whole run."""
    yield from _for_the_session(Cluster().start(), request, "cluster")


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager, for the whole run.

    Inside the bubble (`make test`) this is the bubble cluster's control plane, so the whole run
    uses one cluster; elsewhere a loopback-only control plane.
    """
    if bubble.inside():
        yield request.getfixturevalue("cluster").control_plane
        return
    yield from _for_the_session(ControlPlane().start(), request, "control plane")


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """A synchronous admin client for test set-up and assertions (the operator uses the async one)."""
    api = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists; deleted after the test."""
    core = k8s.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 60
    while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"kube-controller-manager created no default ServiceAccount in {name}")
        time.sleep(0.2)
    yield name
    core.delete_namespace(name)


Kubectl = Callable[..., str]


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """Run kubectl as admin; returns stdout and raises with stderr on failure."""

    def run(*args: str, input: str | None = None) -> str:
        return control_plane.kubectl(*args, input=input).stdout

    return run


@pytest.fixture
def apply_yaml(control_plane: ControlPlane) -> Callable[..., str]:
    """Apply YAML text or a file with kubectl, optionally into a namespace."""

    def apply(source: str | Path, namespace: str | None = None) -> str:
        args = ["apply", "-f", str(source) if isinstance(source, Path) else "-"]
        if namespace:
            args += ["-n", namespace]
        text = None if isinstance(source, Path) else source
        return control_plane.kubectl(*args, input=text).stdout

    return apply


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> Path:
    """The project's CRDs, applied once and Established."""
    control_plane.kubectl("apply", "-f", str(CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    return CRDS


@pytest.fixture
def operator(
    control_plane: ControlPlane,
    aws: MotoServer,
    crds: Path,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Operator]:
    """The operator, pointed at this test's moto and the control plane.

    It watches only this test's namespaces (`namespace`, and `other_namespace` when the test uses
    it): objects of earlier tests whose namespaces are still terminating must not add AWS calls
    or events to this test's observations.
    """
    args = list(getattr(request, "param", []))
    args += ["--namespace", namespace]
    if "other_namespace" in request.fixturenames:
        args += ["--namespace", request.getfixturevalue("other_namespace")]
    op = Operator(env=operator_env(control_plane, aws), log=tmp_path / "operator.log", args=args)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"\n--- operator log ({op.log}):\n" + "\n".join(op.log_text().splitlines()[-60:]))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can print logs for failed tests."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
