"""What Direct delivery adds to a pod: a memory-backed volume per ExternalSecret, the projected
token, and the agent as a native sidecar.

The sidecar is the first init container with `restartPolicy: Always`: kubelet starts it before
every other init and app container and waits for its startup probe, which passes once every
named ExternalSecret's files are written, so the app starts only with its secrets. Only the agent
mounts the volumes writable; app containers get them read-only at `mount.path`. The agent's
container satisfies the `restricted` Pod Security profile and has small, set resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.agent.protocol import AUDIENCE

AGENT_NAME = "tmpfs-secrets-agent"
TOKEN_VOLUME = "tmpfs-secrets-agent-token"
TOKEN_DIR = "/var/run/secrets/tmpfs-secrets.io/agent"
AGENT_ROOT = "/tmpfs-secrets"  # where the agent sees each volume: /tmpfs-secrets/<ExternalSecret>
TOKEN_SECONDS = 600  # the shortest lifetime kubelet accepts; it refreshes the file at 80%
SIZE_LIMIT = "4Mi"  # a Secret holds at most 1 MiB; two versions exist during a swap


@dataclass(frozen=True)
class AgentConfig:
    """How injected agents reach the operator (from the operator's settings)."""

    image: str
    url: str  # https://<service>.<namespace>.svc:<port>
    ca_pem: str  # the CA that signed the operator's serving certificate
    cpu: str = "10m"
    memory: str = "32Mi"


def volume(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": SIZE_LIMIT}}


def token_volume() -> dict[str, Any]:
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": AUDIENCE,
                        "expirationSeconds": TOKEN_SECONDS,
                        "path": "token",
                    }
                }
            ]
        },
    }


def sidecar(config: AgentConfig, secrets: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The agent container for (ExternalSecret, volume name) pairs."""
    targets = [f"--secret={name}={AGENT_ROOT}/{name}" for name, _ in secrets]
    command = ["python3", "-m", "tmpfs_secrets.agent"]
    return {
        "name": AGENT_NAME,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": command,
        "args": [f"--url={config.url}", f"--token={TOKEN_DIR}/token", *targets],
        "env": [{"name": "TMPFS_SECRETS_CA", "value": config.ca_pem}],
        "volumeMounts": [
            *({"name": vol, "mountPath": f"{AGENT_ROOT}/{name}"} for name, vol in secrets),
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        ],
        "startupProbe": {
            "exec": {"command": [*command, "--check", *targets]},
            "periodSeconds": 1,
            "timeoutSeconds": 5,
            "failureThreshold": 300,
        },
        "resources": {
            "requests": {"cpu": config.cpu, "memory": config.memory},
            "limits": {"memory": config.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
