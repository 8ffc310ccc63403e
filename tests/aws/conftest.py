"""An engine wired to moto, a recording Sink and a KubeReads stand-in (not the Kubernetes API).

The engine's Kubernetes side is tested against a real API server elsewhere; here the two seams
are plain objects so the engine and providers can be exercised against AWS (moto) alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.cluster.aws import MotoServer
from tmpfs_secrets.engine import Engine, EngineSettings
from tmpfs_secrets.ports import ObjectRef, ServiceAccountToken, SyncFailure, SyncSuccess


@dataclass
class RecordingSink:
    """Implements the Sink protocol by remembering every call in order."""

    events: list[tuple[str, Any, Any]] = field(default_factory=list)

    async def synced(self, ref: ObjectRef, result: SyncSuccess) -> None:
        self.events.append(("synced", ref, result))

    async def failed(self, ref: ObjectRef, result: SyncFailure) -> None:
        self.events.append(("failed", ref, result))

    async def store_status(
        self, kind: str, namespace: str | None, name: str, ready: bool, reason: str, message: str
    ) -> None:
        self.events.append(("store", (kind, namespace, name), (ready, reason, message)))

    def successes(self, ref: ObjectRef) -> list[SyncSuccess]:
        return [r for kind, o, r in self.events if kind == "synced" and o == ref]

    def failures(self, ref: ObjectRef) -> list[SyncFailure]:
        return [r for kind, o, r in self.events if kind == "failed" and o == ref]

    def last(self, ref: ObjectRef) -> SyncSuccess | SyncFailure | None:
        mine = [r for kind, o, r in self.events if kind in ("synced", "failed") and o == ref]
        return mine[-1] if mine else None

    def store(self, name: str) -> tuple[bool, str, str] | None:
        mine = [r for kind, o, r in self.events if kind == "store" and o[2] == name]
        return mine[-1] if mine else None

    def messages(self) -> list[str]:
        out = []
        for kind, _, r in self.events:
            if kind == "failed":
                out.append(r.message)
            elif kind == "store":
                out.append(r[2])
        return out


@dataclass
class KubeReads:
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[tuple[str, str, str], str] = field(default_factory=dict)
    accounts: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> role arn
    token_requests: int = 0

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self.labels.get(namespace, {})

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        return self.secrets[(namespace, name, key)]

    async def service_account_token(self, namespace: str, name: str) -> ServiceAccountToken:
        if (namespace, name) not in self.accounts:
            raise KeyError(name)
        self.token_requests += 1
        return ServiceAccountToken(
            "header.payload.signature", self.accounts[(namespace, name)], time.time() + 3600
        )


@dataclass
class Harness:
    engine: Engine
    rec: RecordingSink
    kube: KubeReads
    aws: MotoServer

    async def until(self, check: Callable[[], Any], within: float = 15.0) -> Any:
        """Poll until `check()` is truthy; fail after `within` seconds (a bound, never a measurement)."""
        deadline = time.monotonic() + within
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0.05)
            await self.engine.idle()


@pytest.fixture
async def harness(aws: MotoServer) -> AsyncIterator[Harness]:
    rec = RecordingSink()
    kube = KubeReads()
    engine = Engine(
        kube,
        rec,
        EngineSettings(
            store_grace=0.0,
            backoff_base=0.2,
            backoff_cap=1.0,
            allow_operator_identity=True,
            min_refresh_interval=0.1,
        ),
    )
    await engine.start()
    try:
        yield Harness(engine, rec, kube, aws)
    finally:
        await engine.stop()


@pytest.fixture
def sm(aws: MotoServer) -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture
def ssm(aws: MotoServer) -> Any:
    return boto3.client("ssm")


def store(
    name: str = "aws",
    namespace: str = "shop",
    service: str = "SecretsManager",
    kind: str = "SecretStore",
    **aws: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "generation": 1}
    if kind == "SecretStore":
        meta["namespace"] = namespace
    return {
        "kind": kind,
        "metadata": meta,
        "spec": {"provider": {"aws": {"service": service, "region": "us-east-1", **aws}}},
    }


def external_secret(
    name: str, spec: dict[str, Any], namespace: str = "shop", generation: int = 1, **meta: Any
) -> dict[str, Any]:
    body = {
        "metadata": {"name": name, "namespace": namespace, "generation": generation, **meta},
        "spec": {"secretStoreRef": {"name": "aws"}, **spec},
    }
    return body


def data(*pairs: tuple[str, str], **remote: Any) -> list[dict[str, Any]]:
    return [{"secretKey": k, "remoteRef": {"key": key, **remote}} for k, key in pairs]
