"""The operator's own client against the real API server: a client certificate, a token file read
again after a 401 (a rotated ServiceAccount token), and an exec plugin's token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.control_plane import ControlPlane
from tmpfs_secrets.kube.rest import KubeApiError, connect, core_path


def with_user(control_plane: ControlPlane, path: Path, user: dict[str, Any]) -> Path:
    config = yaml.safe_load(control_plane.operator_kubeconfig().read_text())
    config["users"][0]["user"] = user
    path.write_text(yaml.safe_dump(config))
    return path


async def namespaces(kubeconfig: Path) -> list[str]:
    rest = await connect(str(kubeconfig))
    try:
        answer = await rest.get(core_path("namespaces"))
        return [item["metadata"]["name"] for item in answer["items"]]
    finally:
        await rest.close()


def test_a_client_certificate_is_presented(control_plane: ControlPlane) -> None:
    assert "default" in asyncio.run(namespaces(control_plane.kubeconfig))


def test_a_rotated_token_file_is_read_again_after_a_401(control_plane: ControlPlane, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token")
    kubeconfig = with_user(control_plane, tmp_path / "kc", {"tokenFile": str(token_file)})

    async def scenario() -> list[str]:
        rest = await connect(str(kubeconfig))
        try:
            with pytest.raises(KubeApiError) as refused:
                await rest.get(core_path("namespaces"))
            assert refused.value.status == 401  # read again after the 401, still wrong: refused
            token_file.write_text(control_plane.operator_token)  # kubelet rotated the token
            answer = await rest.get(core_path("namespaces"))  # the cached token fails, the new one works
            return [item["metadata"]["name"] for item in answer["items"]]
        finally:
            await rest.close()

    assert "default" in asyncio.run(scenario())


def test_an_exec_plugin_token_is_used(control_plane: ControlPlane, tmp_path: Path) -> None:
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        " 'status': {'token': os.environ['TOKEN']}}))\n"
    )
    exec_ = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(script)],
        "env": [{"name": "TOKEN", "value": control_plane.operator_token}],
        "interactiveMode": "Never",
    }
    kubeconfig = with_user(control_plane, tmp_path / "kc", {"exec": exec_})
    assert "default" in asyncio.run(namespaces(kubeconfig))
