"""Reading a kubeconfig or the pod's ServiceAccount: the fields the operator uses, relative paths,
merged files, and a message that says what to change for anything it cannot use."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from tmpfs_secrets.kube.kubeconfig import Connection, ExecPlugin, KubeconfigError, in_cluster, load

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def write(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def config(user: dict[str, object], *, cluster: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://10.0.0.1:6443/"}}],
        "users": [{"name": "u", "user": user}],
    }


def test_a_token_and_the_cluster_fields(tmp_path: Path) -> None:
    cluster = {
        "server": "https://api.example:6443",
        "certificate-authority-data": base64.b64encode(PEM.encode()).decode(),
        "proxy-url": "http://proxy:3128",
    }
    conn = load(str(write(tmp_path / "kc", config({"token": "t0k"}, cluster=cluster))))
    assert conn == Connection(
        server="https://api.example:6443",
        ca_data=PEM,
        token="t0k",
        proxy="http://proxy:3128",
        namespace="shop",
    )


def test_relative_paths_are_relative_to_their_own_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    user = {"client-certificate": "u.crt", "client-key": "/abs/u.key", "tokenFile": "tok"}
    cluster = {"server": "https://x", "certificate-authority": "ca.crt", "insecure-skip-tls-verify": True}
    conn = load(str(write(tmp_path / "sub" / "kc", config(user, cluster=cluster))))
    assert conn.cert_file == str(tmp_path / "sub" / "u.crt")
    assert conn.key_file == "/abs/u.key"
    assert conn.token_file == str(tmp_path / "sub" / "tok")
    assert conn.ca_file == str(tmp_path / "sub" / "ca.crt")
    assert conn.insecure is True


def test_kubeconfig_files_are_merged_and_the_first_definition_wins(tmp_path: Path) -> None:
    first = write(
        tmp_path / "a", {"current-context": "ctx", "users": [{"name": "u", "user": {"token": "first"}}]}
    )
    second = config({"token": "second"})
    write(tmp_path / "b", second)
    conn = load(
        None, {"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{tmp_path / 'b'}", "HOME": str(tmp_path)}
    )
    assert conn.token == "first" and conn.server == "https://10.0.0.1:6443"


def test_an_exec_plugin_is_read_with_its_arguments_and_environment(tmp_path: Path) -> None:
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", "prod"],
            "env": [{"name": "AWS_PROFILE", "value": "ops"}],
        }
    }
    conn = load(str(write(tmp_path / "kc", config(user))))
    assert conn.exec == ExecPlugin(
        "aws",
        ("eks", "get-token", "--cluster-name", "prod"),
        (("AWS_PROFILE", "ops"),),
        user["exec"]["apiVersion"],
    )


@pytest.mark.parametrize(
    ("user", "says"),
    [
        ({"auth-provider": {"name": "oidc"}}, "auth-provider is not supported"),
        ({"username": "admin", "password": "pw"}, "username is not supported"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, "v1alpha1"),
        ({"client-certificate-data": "not base64!"}, "not base64-encoded PEM"),
    ],
)
def test_what_cannot_be_used_is_refused_with_what_to_change(
    tmp_path: Path, user: dict[str, object], says: str
) -> None:
    with pytest.raises(KubeconfigError, match=says):
        load(str(write(tmp_path / "kc", config(user))))


def test_broken_yaml_is_refused_without_quoting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text("users:\n- name: u\n  user: {token: s3cr3t-t0ken\n")
    with pytest.raises(KubeconfigError) as raised:
        load(str(path))
    assert "not valid YAML" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_a_missing_context_or_server_says_so(tmp_path: Path) -> None:
    no_context = config({"token": "t"})
    no_context["current-context"] = "other"
    with pytest.raises(KubeconfigError, match="'other' is not among its contexts"):
        load(str(write(tmp_path / "a", no_context)))
    with pytest.raises(KubeconfigError, match="has no server"):
        load(str(write(tmp_path / "b", config({"token": "t"}, cluster={"certificate-authority": "x"}))))


def test_in_a_pod_the_service_account_is_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text(PEM)
    (tmp_path / "namespace").write_text("tmpfs-secrets\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(env, tmp_path) == Connection(
        server="https://[fd00::1]:443",
        ca_file=str(tmp_path / "ca.crt"),
        token_file=str(tmp_path / "token"),
        namespace="tmpfs-secrets",
    )


def test_without_a_kubeconfig_or_a_pod_the_error_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="set \\$KUBECONFIG to a kubeconfig file"):
        load(None, {"HOME": str(tmp_path)})
