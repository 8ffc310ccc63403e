"""Concurrent first calls for one (identity, service, region) build one boto3 client, not one each:
each build parses the service model, tens of MiB at once for SSM."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import DefaultAuth


async def test_concurrent_first_calls_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = AwsRuntime(threads=8)
    made: list[str] = []
    build = runtime._make_client

    def counting(service: str, region: str, creds: Any) -> Any:
        made.append(service)
        return build(service, region, creds)

    monkeypatch.setattr(runtime, "_make_client", counting)
    try:
        clients = await asyncio.gather(
            *(runtime.client(DefaultAuth(), "ParameterStore", "us-east-1") for _ in range(8))
        )
        other = await runtime.client(DefaultAuth(), "SecretsManager", "us-east-1")
    finally:
        runtime.close()
    assert made == ["ssm", "secretsmanager"]
    assert all(c is clients[0] for c in clients)
    assert other is not clients[0]
