"""What the handlers share during one operator run: settings, the Kubernetes side, the engine.

It travels in kopf's `memo`, so handlers stay plain functions without module-level globals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tmpfs_secrets.config import Settings
from tmpfs_secrets.direct.runtime import DirectSide
from tmpfs_secrets.engine import Engine
from tmpfs_secrets.kube.leader_pod import LeaderPodLabel
from tmpfs_secrets.kube.lease import LeaderElector
from tmpfs_secrets.kube.runtime import KubeSide
from tmpfs_secrets.ports import ObjectRef

StoreId = tuple[str, str | None, str]  # kind, namespace, name


@dataclass
class Following:
    """Whether this replica leads, and what it saw while another one led.

    A follower keeps its watches and index but hands nothing to the engine (so it neither calls
    AWS nor writes); the newest body of every store and ExternalSecret waits here and goes to the
    engine when this replica takes over, as after a restart: already synced objects join the
    spread schedule instead of being fetched at once.
    """

    leading: bool = True
    stores: dict[StoreId, dict[str, Any]] = field(default_factory=dict)
    external_secrets: dict[ObjectRef, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Runtime:
    settings: Settings
    kube: KubeSide
    engine: Engine
    following: Following = field(default_factory=Following)
    elector: LeaderElector | None = None  # with --leader-elect
    election: asyncio.Task[None] | None = None
    leader_pod: LeaderPodLabel | None = None  # with --leader-elect, in a pod (POD_NAME set)
    direct: DirectSide | None = None


def runtime(memo: Any) -> Runtime:
    found = getattr(memo, "runtime", None)
    if not isinstance(found, Runtime):
        raise RuntimeError(
            "the operator's runtime is missing from kopf's memo; start it with tmpfs-secrets run"
        )
    return found
