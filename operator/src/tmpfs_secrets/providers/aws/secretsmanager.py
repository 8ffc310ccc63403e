"""Secrets Manager: BatchGetSecretValue for current values, GetSecretValue for the rest.

BatchGetSecretValue takes up to 20 ids but no version per id, so refs asking for a stage other
than AWSCURRENT or for a version id go one by one. When the identity may not call the batch
operation at all, the provider falls back to GetSecretValue per id and remembers that for a
while, so a least-privilege policy costs calls, not correctness.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from tmpfs_secrets.errors import Reason, SyncError
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import Auth
from tmpfs_secrets.providers.aws.errors import for_code, from_exception, reason_of
from tmpfs_secrets.providers.base import SECRETS_MANAGER, Fetched, Found, SourceRef

BATCH_SIZE = 20
CURRENT = "AWSCURRENT"
BATCH_DENIED_RETRY = 3600.0  # seconds before trying the batch call again after AccessDenied
_VERSION_ID = re.compile(
    r"^(uuid/)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def is_version_id(version: str | None) -> bool:
    """A version id (a UUID, optionally written `uuid/<id>` as in ESO) pins an immutable value."""
    return version is not None and bool(_VERSION_ID.match(version))


def _what(ref: SourceRef) -> str:
    return f"secret {ref.key}" + (f" (version {ref.version})" if ref.version else "")


class SecretsManagerProvider:
    batch_size = BATCH_SIZE

    def __init__(
        self, aws: AwsRuntime, auth: Auth, region: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._aws = aws
        self._auth = auth
        self._region = region
        self._clock = clock
        self._batch_denied_until = 0.0

    async def fetch(self, refs: Sequence[SourceRef]) -> dict[SourceRef, Fetched | SyncError]:
        out: dict[SourceRef, Fetched | SyncError] = {}
        batchable = list(dict.fromkeys(r for r in refs if r.version in (None, CURRENT)))
        singles = [r for r in dict.fromkeys(refs) if r not in batchable]
        try:
            client = await self._aws.client(self._auth, SECRETS_MANAGER, self._region)
        except SyncError as exc:
            return dict.fromkeys(refs, exc)
        for start in range(0, len(batchable), BATCH_SIZE):
            chunk = batchable[start : start + BATCH_SIZE]
            if self._clock() < self._batch_denied_until:
                singles.extend(chunk)
                continue
            singles.extend(await self._batch(client, chunk, out))
        results = await asyncio.gather(*(self._single(client, r) for r in singles))
        out.update(zip(singles, results, strict=True))
        return out

    async def find(self, query: str) -> Found:
        """ListSecrets (name prefix and tag filters on the AWS side, the name's regular expression
        and exact tag pairs here), then the values in batches of 20."""
        spec = json.loads(query) if query.startswith("{") else {"path": query}
        what = f"secrets found by {query}"
        try:
            client = await self._aws.client(self._auth, SECRETS_MANAGER, self._region)
            names = await self._aws.call(_list_names, client, spec)
        except SyncError:
            raise
        except Exception as exc:
            raise from_exception(exc, what, "secretsmanager:ListSecrets", self._region) from None
        values = await self.fetch([SourceRef(n) for n in names])
        found: dict[str, Fetched] = {}
        for ref, result in values.items():
            if isinstance(result, SyncError):
                if result.reason is Reason.SOURCE_NOT_FOUND:
                    continue  # deleted between the listing and the read
                raise result
            found[ref.key] = result
        return Found(str(spec.get("path") or ""), found)

    async def _batch(
        self, client: Any, chunk: list[SourceRef], out: dict[SourceRef, Fetched | SyncError]
    ) -> list[SourceRef]:
        """Fill `out` from one batch call; returns refs that need GetSecretValue instead."""
        try:
            response = await self._aws.call(
                client.batch_get_secret_value, SecretIdList=[r.key for r in chunk]
            )
        except ClientError as exc:
            if reason_of(exc) is Reason.ACCESS_DENIED:
                self._batch_denied_until = self._clock() + BATCH_DENIED_RETRY
                return chunk
            self._batch_failed(exc, chunk, out)
            return []
        except Exception as exc:
            self._batch_failed(exc, chunk, out)
            return []
        by_id: dict[str, Fetched] = {}
        for entry in response.get("SecretValues", []):
            fetched = _fetched(entry)
            for name in (entry.get("Name"), entry.get("ARN")):
                if name:
                    by_id[name] = fetched
        errors = {e.get("SecretId"): e for e in response.get("Errors", [])}
        leftover = []
        for ref in chunk:
            if ref.key in by_id:
                out[ref] = by_id[ref.key]
            elif ref.key in errors:
                e = errors[ref.key]
                out[ref] = for_code(
                    str(e.get("ErrorCode", "Unknown")),
                    _what(ref),
                    "secretsmanager:GetSecretValue",
                    self._region,
                )
            else:  # e.g. a partial ARN that matches neither Name nor ARN: ask for it alone
                leftover.append(ref)
        return leftover

    def _batch_failed(
        self, exc: Exception, chunk: list[SourceRef], out: dict[SourceRef, Fetched | SyncError]
    ) -> None:
        """Each key gets its own message, naming it: a message naming the call (how many keys it
        carried) would change with every retry's batch composition and rewrite every status."""
        for ref in chunk:
            out[ref] = from_exception(exc, _what(ref), "secretsmanager:BatchGetSecretValue", self._region)

    async def _single(self, client: Any, ref: SourceRef) -> Fetched | SyncError:
        kwargs: dict[str, str] = {"SecretId": ref.key}
        if is_version_id(ref.version):
            assert ref.version is not None
            kwargs["VersionId"] = ref.version.removeprefix("uuid/")
        elif ref.version:
            kwargs["VersionStage"] = ref.version
        try:
            return _fetched(await self._aws.call(client.get_secret_value, **kwargs))
        except Exception as exc:
            return from_exception(exc, _what(ref), "secretsmanager:GetSecretValue", self._region)


def _list_names(client: Any, spec: dict[str, Any]) -> list[str]:
    """Every page, in the pool thread. AWS filters tags by key and by value separately, so exact
    pairs are checked here."""
    filters: list[dict[str, Any]] = []
    if spec.get("path"):
        filters.append({"Key": "name", "Values": [spec["path"]]})
    tags: dict[str, str] = spec.get("tags") or {}
    for key, value in tags.items():
        filters.append({"Key": "tag-key", "Values": [key]})
        filters.append({"Key": "tag-value", "Values": [value]})
    pattern = re.compile(spec["name"]) if spec.get("name") else None
    names = []
    kwargs: dict[str, Any] = {"Filters": filters} if filters else {}
    for page in client.get_paginator("list_secrets").paginate(**kwargs):
        for entry in page.get("SecretList", []):
            name = str(entry.get("Name", ""))
            if spec.get("path") and not name.startswith(spec["path"]):
                continue
            if pattern is not None and not pattern.search(name):
                continue
            have = {t.get("Key"): t.get("Value") for t in entry.get("Tags") or []}
            if any(have.get(k) != v for k, v in tags.items()):
                continue
            names.append(name)
    return sorted(names)


def _fetched(entry: Any) -> Fetched:
    version = str(entry.get("VersionId", ""))
    if entry.get("SecretString") is not None:
        # JSON can carry an unpaired surrogate, which has no UTF-8 form: keep its bytes as they
        # are, so the value is delivered and a property or extract on it fails with a clear status.
        return Fetched(entry["SecretString"].encode("utf-8", "surrogatepass"), version)
    return Fetched(bytes(entry.get("SecretBinary") or b""), version, binary=True)
