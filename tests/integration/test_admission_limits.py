"""What the API server refuses at admission beyond types: Secret keys Kubernetes would refuse later,
and refreshIntervals out of range. Each refusal names the field and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane

ES = """
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: aws}}
{spec}
"""

BAD_KEYS = {
    "dot": ".",
    "dotdot": "..",
    "dotdot-x": "..x",
    "three-dots": "...",
    "empty": "",
    "long": "k" * 254,
    "non-ascii": "clé",
}


def apply(control_plane: ControlPlane, namespace: str, name: str, spec: str) -> tuple[int, str]:
    text = ES.format(name=name, spec=spec)
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=False)
    return result.returncode, result.stderr


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_secret_keys_kubernetes_refuses_are_refused_in_data(
    key: str, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    code, err = apply(
        control_plane, namespace, "bad-key", f'  data: [{{secretKey: "{key}", remoteRef: {{key: k}}}}]\n'
    )
    assert code != 0 and "spec.data[0].secretKey" in err, err


@pytest.mark.parametrize("key", [".env", "a..b", "k" * 253])
def test_odd_but_valid_keys_are_accepted(
    key: str, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    code, err = apply(
        control_plane, namespace, "odd-key", f'  data: [{{secretKey: "{key}", remoteRef: {{key: k}}}}]\n'
    )
    assert code == 0, err


@pytest.mark.parametrize("interval", ["87601h", "87600h1s", "100000h", "-1s"])
def test_refresh_intervals_beyond_the_ceiling_are_refused(
    interval: str, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    code, err = apply(
        control_plane,
        namespace,
        "long",
        f"  refreshInterval: {interval}\n  data: [{{secretKey: A, remoteRef: {{key: k}}}}]\n",
    )
    assert code != 0 and "87600h" in err, err


@pytest.mark.parametrize("interval", ["0", "87600h", "10s", "1.5h"])
def test_refresh_intervals_in_range_are_accepted(
    interval: str, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    code, err = apply(
        control_plane,
        namespace,
        "in-range",
        f"  refreshInterval: '{interval}'\n  data: [{{secretKey: A, remoteRef: {{key: k}}}}]\n",
    )
    assert code == 0, err
