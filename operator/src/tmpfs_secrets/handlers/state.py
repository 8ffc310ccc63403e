"""What the handlers share during one operator run: settings, the Kubernetes side, the engine.

It travels in kopf's `memo`, so handlers stay plain functions without module-level globals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.config import Settings
from tmpfs_secrets.direct.runtime import DirectSide
from tmpfs_secrets.engine import Engine
from tmpfs_secrets.kube.runtime import KubeSide


@dataclass
class Runtime:
    settings: Settings
    kube: KubeSide
    engine: Engine
    direct: DirectSide | None = None


def runtime(memo: Any) -> Runtime:
    found = getattr(memo, "runtime", None)
    if not isinstance(found, Runtime):
        raise RuntimeError(
            "the operator's runtime is missing from kopf's memo; start it with tmpfs-secrets run"
        )
    return found
