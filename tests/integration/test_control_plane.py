"""The local control plane is a real one: each test exercises a part that a fake API would not have."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster.control_plane import ControlPlane
from tests.cluster.polling import wait_until
from tests.integration.webhook_server import JsonPatchWebhook


def test_version_is_the_pinned_release(control_plane: ControlPlane) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == "v1.37.2"
    assert out["clientVersion"]["gitVersion"] == "v1.37.2"


def test_namespace_deletion_is_finalized_by_the_controller_manager(api_client: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api_client)
    name = f"gone-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="c"), data={"a": "b"})
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    # Only kube-controller-manager's namespace controller empties the namespace and removes its finalizer.
    wait_until("the namespace to be deleted", gone)


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.tmpfs-secrets.io"},
    "spec": {
        "group": "test.tmpfs-secrets.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_custom_resource_schema_is_enforced(api_client: k8s.ApiClient, namespace: str) -> None:
    ext = k8s.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = k8s.CustomObjectsApi(api_client)

    def widget(size: object) -> dict[str, Any]:
        return {
            "apiVersion": "test.tmpfs-secrets.io/v1",
            "kind": "Widget",
            "metadata": {"name": f"w-{uuid.uuid4().hex[:6]}"},
            "spec": {"size": size},
        }

    def established() -> bool:
        try:
            custom.create_namespaced_custom_object(
                "test.tmpfs-secrets.io", "v1", namespace, "widgets", widget(3)
            )
        except ApiException as exc:
            if exc.status == 404:  # the new resource is not served yet
                return False
            raise
        return True

    wait_until("the CRD to be served", established)
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "test.tmpfs-secrets.io", "v1", namespace, "widgets", widget(99)
        )
    assert rejected.value.status == 422
    assert "spec.size" in str(rejected.value.body)


def test_deployment_creates_replicaset_and_pending_pods(api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    core = k8s.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name="web"),
            spec=k8s.V1DeploymentSpec(
                replicas=2,
                selector=k8s.V1LabelSelector(match_labels=labels),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="example.invalid/none")]),
                ),
            ),
        ),
    )
    replica_sets = wait_until(
        "a ReplicaSet", lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
    )
    assert replica_sets[0].metadata.owner_references[0].kind == "Deployment"
    pods = wait_until(
        "two pods",
        lambda: (lambda items: items if len(items) == 2 else None)(
            core.list_namespaced_pod(namespace, label_selector="app=web").items
        ),
    )
    assert {p.metadata.owner_references[0].name for p in pods} == {replica_sets[0].metadata.name}
    assert all(p.status.phase == "Pending" for p in pods)


def test_token_request_and_token_review_round_trip(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
    )
    issued = core.create_namespaced_service_account_token(
        "app",
        namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=["sts.amazonaws.com"], expiration_seconds=600)
        ),
    )
    token = issued.status.token
    assert token.count(".") == 2  # a signed JWT

    review = k8s.AuthenticationV1Api(api_client).create_token_review(
        k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=["sts.amazonaws.com"]))
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:app"
    assert review.status.audiences == ["sts.amazonaws.com"]

    wrong_audience = k8s.AuthenticationV1Api(api_client).create_token_review(
        k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=["tmpfs-secrets.io"]))
    )
    assert not wrong_audience.status.authenticated


def test_rbac_denies_a_service_account_without_permissions(
    api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[]))
    ).status.token

    config = k8s.Configuration()
    config.host = control_plane.api_url
    config.ssl_ca_cert = str(control_plane.pki / "ca.crt")
    config.api_key = {"authorization": f"Bearer {token}"}
    with k8s.ApiClient(config) as as_nobody, pytest.raises(ApiException) as denied:
        k8s.CoreV1Api(as_nobody).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)
    # The same request as admin succeeds, so the denial is RBAC's and not a broken request.
    assert k8s.CoreV1Api(api_client).list_namespaced_secret(namespace).items == []


def test_mutating_webhook_on_loopback_mutates_a_pod(
    api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    patch = [{"op": "add", "path": "/metadata/labels/mutated-by", "value": "test-webhook"}]
    with JsonPatchWebhook(control_plane.ca, patch) as hook:
        admission = k8s.AdmissionregistrationV1Api(api_client)
        name = f"mutate-{namespace}"
        admission.create_mutating_webhook_configuration(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [
                    {
                        "name": "pods.test.tmpfs-secrets.io",
                        "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["pods"],
                            }
                        ],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                        "failurePolicy": "Fail",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 5,
                    }
                ],
            }
        )
        try:
            core = k8s.CoreV1Api(api_client)
            counter = iter(range(1000))

            def mutated_pod() -> Any:
                # A new configuration takes effect after a short delay: create canaries until one is mutated.
                pod = core.create_namespaced_pod(
                    namespace,
                    k8s.V1Pod(
                        metadata=k8s.V1ObjectMeta(name=f"p{next(counter)}", labels={"app": "x"}),
                        spec=k8s.V1PodSpec(
                            containers=[k8s.V1Container(name="c", image="example.invalid/none")]
                        ),
                    ),
                )
                return pod if (pod.metadata.labels or {}).get("mutated-by") == "test-webhook" else None

            pod = wait_until("a mutated pod", mutated_pod, timeout=30)
            assert pod.metadata.labels["app"] == "x"
            assert hook.requests, "the API server never called the webhook"
            assert hook.requests[-1]["request"]["kind"]["kind"] == "Pod"
        finally:
            admission.delete_mutating_webhook_configuration(name)
