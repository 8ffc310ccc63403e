"""The registry of stores: their specs, the AWS auth built for each, and who may use them.

Building an auth needs Kubernetes reads (a ServiceAccount's token and role annotation, static keys
in a Secret); they come through `KubeReads`, so the providers stay free of Kubernetes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.api.external_secret import ExternalSecretSpec
from tmpfs_secrets.api.store import KeyRef, StoreSpec, parse_store
from tmpfs_secrets.errors import Reason, SpecError, StoreError, traceback_text
from tmpfs_secrets.ports import KubeReads, ReadError
from tmpfs_secrets.providers.aws.credentials import (
    AssumeRoleAuth,
    Auth,
    DefaultAuth,
    StaticAuth,
    WebIdentityAuth,
    session_name,
    session_tags,
)
from tmpfs_secrets.vocabulary import CLUSTER_SECRET_STORE, SECRET_STORE

log = logging.getLogger(__name__)

StoreKey = tuple[str, str | None, str]  # (kind, namespace or None, name)


@dataclass
class StoreRuntime:
    spec: StoreSpec
    auth: Auth | None
    error: StoreError | None


def store_key(kind: str, namespace: str | None, name: str) -> StoreKey:
    return (kind, namespace if kind == SECRET_STORE.kind else None, name)


class Stores:
    def __init__(self, kube: KubeReads, *, allow_operator_identity: bool = False) -> None:
        self._kube = kube
        self._allow_operator_identity = allow_operator_identity
        self._stores: dict[StoreKey, StoreRuntime] = {}

    def get(self, key: StoreKey) -> StoreRuntime | None:
        return self._stores.get(key)

    def identities(self) -> set[tuple[str, ...]]:
        return {rt.auth.identity for rt in self._stores.values() if rt.auth is not None}

    async def upsert(self, body: Mapping[str, Any]) -> tuple[StoreKey, StoreRuntime, bool]:
        """Parse and build auth; returns (key, runtime, changed). Raises SpecError with the key unknown."""
        kind = str(body.get("kind", SECRET_STORE.kind))
        meta = body.get("metadata") or {}
        key = store_key(kind, meta.get("namespace"), str(meta.get("name", "")))
        try:
            spec = parse_store(body, allow_operator_identity=self._allow_operator_identity)
        except SpecError as exc:
            runtime = StoreRuntime(_placeholder(key), None, StoreError(exc.message, Reason.INVALID_SPEC))
            self._stores[key] = runtime
            return key, runtime, True
        old = self._stores.get(key)
        if old is not None and old.error is None and _same(old.spec, spec):
            old.spec = spec
            return key, old, False
        try:
            auth: Auth | None = await self._build_auth(spec)
            error = None
        except StoreError as exc:
            auth, error = None, exc
        runtime = StoreRuntime(spec, auth, error)
        self._stores[key] = runtime
        changed = old is None or old.auth != auth or not _same(old.spec, spec) or old.error != error
        return key, runtime, changed

    def remove(self, key: StoreKey) -> StoreRuntime | None:
        return self._stores.pop(key, None)

    async def resolve(self, es: ExternalSecretSpec) -> StoreRuntime:
        """The store an ExternalSecret may use; raises StoreError (NotFound, NotAllowed, NotReady)."""
        ref = es.store_ref
        key = store_key(ref.kind, es.namespace, ref.name)
        runtime = self._stores.get(key)
        if runtime is None:
            where = (
                f"SecretStore {es.namespace}/{ref.name}"
                if ref.kind == SECRET_STORE.kind
                else (f"ClusterSecretStore {ref.name}")
            )
            raise StoreError(
                f"{where} does not exist; create it or fix spec.secretStoreRef (an ExternalSecret can use a "
                "SecretStore of its own namespace or a ClusterSecretStore that admits its namespace)",
                Reason.STORE_NOT_FOUND,
            )
        spec = runtime.spec
        if ref.kind == CLUSTER_SECRET_STORE.kind and spec.conditions:
            labels: Mapping[str, str] = {}
            if spec.needs_namespace_labels:
                labels = await self._kube.namespace_labels(es.namespace)
            if not spec.admits(es.namespace, labels):
                raise StoreError(
                    f"ClusterSecretStore {ref.name} does not admit namespace {es.namespace}; "
                    "its spec.conditions list the namespaces (or namespace labels) that may use it: "
                    "ask its owner to add this one",
                    Reason.STORE_NOT_ALLOWED,
                )
        if runtime.error is not None:
            raise StoreError(f"{spec.display} is not ready: {runtime.error.message}", Reason.STORE_NOT_READY)
        return runtime

    async def _build_auth(self, spec: StoreSpec) -> Auth:
        session = session_name(spec.kind, spec.namespace, spec.name)
        base: Auth = DefaultAuth()
        if spec.auth is not None and spec.auth.service_account is not None:
            base = await self._web_identity(spec, *spec.auth.service_account, session)
        elif spec.auth is not None and spec.auth.access_key_id is not None:
            assert spec.auth.secret_access_key is not None
            akid = await self._secret(spec.auth.access_key_id, "accessKeyIDSecretRef")
            await self._secret(
                spec.auth.secret_access_key, "secretAccessKeySecretRef"
            )  # fail early if absent
            secret_ref = spec.auth.secret_access_key
            base = StaticAuth(
                spec.auth.access_key_id.namespace,
                spec.auth.access_key_id.name,
                akid,
                lambda: self._kube.secret_value(secret_ref.namespace, secret_ref.name, secret_ref.key),
            )
        if spec.role:
            tags = session_tags(spec.kind, spec.namespace, spec.name)
            return AssumeRoleAuth(base, spec.role, spec.external_id, session, spec.region, tags)
        return base

    async def _web_identity(self, spec: StoreSpec, namespace: str, name: str, session: str) -> Auth:
        where = f"ServiceAccount {namespace}/{name}"
        try:
            token = await self._kube.service_account_token(namespace, name)
        except (KeyError, ReadError) as exc:
            log.info("token request for %s failed: %s", where, type(exc).__name__)
            raise StoreError(
                f"could not get a token for {where} ({type(exc).__name__}); check that it exists "
                "and that the operator may create tokens for it (auth.serviceAccountRef)",
                Reason.STORE_NOT_READY,
            ) from None
        except Exception as exc:
            log.error("token request for %s failed unexpectedly:\n%s", where, traceback_text(exc))
            raise StoreError(
                f"could not get a token for {where} ({type(exc).__name__}); check that it exists "
                "and that the operator may create tokens for it (auth.serviceAccountRef)",
                Reason.STORE_NOT_READY,
            ) from None
        if not token.role_arn:
            raise StoreError(
                f"{where} has no eks.amazonaws.com/role-arn annotation; annotate it with the "
                "IAM role ARN the store should assume",
                Reason.STORE_NOT_READY,
            )

        async def fresh_token() -> str:
            return (await self._kube.service_account_token(namespace, name)).token

        return WebIdentityAuth(namespace, name, token.role_arn, session, fresh_token)

    async def _secret(self, ref: KeyRef, field: str) -> str:
        try:
            return await self._kube.secret_value(ref.namespace, ref.name, ref.key)
        except KeyError:
            raise StoreError(
                f"Secret {ref.namespace}/{ref.name} has no key {ref.key!r}; check auth.secretRef.{field}",
                Reason.STORE_NOT_READY,
            ) from None
        except Exception as exc:
            if not isinstance(exc, ReadError):
                log.error(
                    "reading Secret %s/%s failed unexpectedly:\n%s",
                    ref.namespace,
                    ref.name,
                    traceback_text(exc),
                )
            raise StoreError(
                f"could not read Secret {ref.namespace}/{ref.name} ({type(exc).__name__}); "
                f"check that it exists (auth.secretRef.{field})",
                Reason.STORE_NOT_READY,
            ) from None


def _same(a: StoreSpec, b: StoreSpec) -> bool:
    return a == StoreSpec(**{**b.__dict__, "generation": a.generation})


def _placeholder(key: StoreKey) -> StoreSpec:
    return StoreSpec(key[0], key[1], key[2], 0, "SecretsManager", "us-east-1")
