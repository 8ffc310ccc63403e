"""SecretStore and ClusterSecretStore specs.

A store names where values come from (service and region) and with which identity (the
operator's own, a role assumed on top, a tenant's ServiceAccount, or static keys). A
ClusterSecretStore also says which namespaces may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.api import _fields as f
from tmpfs_secrets.api.selectors import LabelSelector, parse_selector
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.vocabulary import CLUSTER_SECRET_STORE, SECRET_STORE, STORE_KINDS

SERVICES = ("SecretsManager", "ParameterStore")
KINDS = STORE_KINDS
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$", re.ASCII)  # what STS accepts


@dataclass(frozen=True)
class KeyRef:
    """One key of a Kubernetes Secret."""

    namespace: str
    name: str
    key: str


@dataclass(frozen=True)
class AuthSpec:
    """Exactly one of service_account (namespace, name) or the two static key refs is set."""

    service_account: tuple[str, str] | None = None
    access_key_id: KeyRef | None = None
    secret_access_key: KeyRef | None = None


@dataclass(frozen=True)
class NamespaceCondition:
    """Admits a namespace listed in `namespaces` or whose labels match `selector`."""

    namespaces: tuple[str, ...] = ()
    selector: LabelSelector | None = None

    def admits(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if namespace in self.namespaces:
            return True
        return self.selector is not None and self.selector.matches(labels)


@dataclass(frozen=True)
class StoreSpec:
    kind: str  # SecretStore | ClusterSecretStore
    namespace: str | None  # None for ClusterSecretStore
    name: str
    generation: int
    service: str  # SecretsManager | ParameterStore
    region: str
    role: str | None = None
    external_id: str | None = None
    auth: AuthSpec | None = None
    conditions: tuple[NamespaceCondition, ...] = ()

    @property
    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def admits(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """No conditions admit every namespace; otherwise any one condition must admit it."""
        if self.kind == SECRET_STORE.kind:
            return namespace == self.namespace
        return not self.conditions or any(c.admits(namespace, labels) for c in self.conditions)

    @property
    def needs_namespace_labels(self) -> bool:
        return any(c.selector is not None for c in self.conditions)


def parse_store(body: Mapping[str, Any], *, allow_operator_identity: bool = False) -> StoreSpec:
    """Parse a SecretStore or ClusterSecretStore object; raises SpecError saying what to change.

    `allow_operator_identity` is the operator's setting: whether a SecretStore without `auth` and
    `role` may read AWS with the operator's own identity (a ClusterSecretStore always may).
    """
    kind = body.get("kind", SECRET_STORE.kind)
    if kind not in KINDS:
        raise SpecError(f"kind {kind!r} is not a store; use SecretStore or ClusterSecretStore")
    namespace, name, generation = f.metadata(body)
    if kind == SECRET_STORE.kind and not namespace:
        raise SpecError("a SecretStore needs metadata.namespace")
    if kind == CLUSTER_SECRET_STORE.kind:
        namespace = None
    spec = f.mapping(body, "spec", "spec", required=True)
    provider = f.mapping(spec, "provider", "spec.provider", required=True)
    aws = f.mapping(provider, "aws", "spec.provider.aws", required=True)
    service = f.choice(aws, "service", "spec.provider.aws.service", SERVICES, "SecretsManager")
    region = f.required_string(aws, "region", "spec.provider.aws.region")
    if not _REGION.match(region):
        raise SpecError(f"spec.provider.aws.region {region!r} is not an AWS region name such as us-east-1")
    role = f.string(aws, "role", "spec.provider.aws.role")
    if role is not None and not _ROLE_ARN.match(role):
        raise SpecError(
            f"spec.provider.aws.role {role!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )
    external_id = f.string(aws, "externalID", "spec.provider.aws.externalID")
    if external_id is not None and not _EXTERNAL_ID.match(external_id):
        raise SpecError("spec.provider.aws.externalID must have 2 to 1224 letters, digits or any of +=,.@:/-")
    if external_id is not None and role is None:
        raise SpecError("spec.provider.aws.externalID is only used with role; set role or remove externalID")
    auth = _parse_auth(aws, kind, namespace)
    conditions = _parse_conditions(spec, kind)
    if kind == SECRET_STORE.kind and auth is None and role is None and not allow_operator_identity:
        raise SpecError(
            "this SecretStore has no spec.provider.aws.auth and no role, so it would read AWS with the "
            "operator's own identity, which this operator does not allow for SecretStores; set "
            "spec.provider.aws.auth.serviceAccountRef (a ServiceAccount of this namespace annotated with "
            "eks.amazonaws.com/role-arn) or spec.provider.aws.role (a role whose trust policy admits "
            "this namespace), or use a ClusterSecretStore an admin made for this namespace"
        )
    return StoreSpec(kind, namespace, name, generation, service, region, role, external_id, auth, conditions)


def _parse_auth(aws: Mapping[str, Any], kind: str, namespace: str | None) -> AuthSpec | None:
    raw = f.mapping(aws, "auth", "spec.provider.aws.auth")
    if not raw:
        return None
    field = "spec.provider.aws.auth"
    given = [k for k in ("serviceAccountRef", "jwt", "secretRef") if k in raw]
    if len(given) != 1:
        raise SpecError(
            f"{field} needs exactly one of serviceAccountRef (or jwt.serviceAccountRef) or secretRef"
        )
    secret = f.mapping(raw, "secretRef", f"{field}.secretRef")
    if given[0] != "secretRef":
        # ESO spells it auth.jwt.serviceAccountRef; both mean per-tenant IRSA.
        where = (
            f"{field}.serviceAccountRef"
            if given[0] == "serviceAccountRef"
            else f"{field}.jwt.serviceAccountRef"
        )
        holder = raw if given[0] == "serviceAccountRef" else f.mapping(raw, "jwt", f"{field}.jwt")
        sa = f.mapping(holder, "serviceAccountRef", where, required=True)
        sa_name = f.required_string(sa, "name", f"{where}.name")
        return AuthSpec(service_account=(_ref_namespace(sa, kind, namespace, where), sa_name))
    refs = []
    for key in ("accessKeyIDSecretRef", "secretAccessKeySecretRef"):
        where = f"{field}.secretRef.{key}"
        ref = f.mapping(secret, key, where, required=True)
        refs.append(
            KeyRef(
                _ref_namespace(ref, kind, namespace, where),
                f.required_string(ref, "name", f"{where}.name"),
                f.required_string(ref, "key", f"{where}.key"),
            )
        )
    return AuthSpec(access_key_id=refs[0], secret_access_key=refs[1])


def _ref_namespace(ref: Mapping[str, Any], kind: str, namespace: str | None, where: str) -> str:
    """A SecretStore reads only its own namespace; a ClusterSecretStore must name one."""
    given = f.string(ref, "namespace", f"{where}.namespace")
    if kind == SECRET_STORE.kind:
        if given is not None and given != namespace:
            raise SpecError(f"{where}.namespace must be the store's own namespace {namespace!r}; remove it")
        assert namespace is not None
        return namespace
    if given is None:
        raise SpecError(f"{where}.namespace is required in a ClusterSecretStore")
    return given


def _parse_conditions(spec: Mapping[str, Any], kind: str) -> tuple[NamespaceCondition, ...]:
    raw = f.items(spec, "conditions", "spec.conditions")
    if raw and kind != CLUSTER_SECRET_STORE.kind:
        raise SpecError("spec.conditions is only for ClusterSecretStore; remove it from the SecretStore")
    out = []
    for i, cond in enumerate(raw):
        where = f"spec.conditions[{i}]"
        if not isinstance(cond, Mapping):
            raise SpecError(f"{where} must be an object with namespaces and/or namespaceSelector")
        names = f.items(cond, "namespaces", f"{where}.namespaces")
        if not all(isinstance(n, str) for n in names):
            raise SpecError(f"{where}.namespaces must be a list of namespace names")
        selector = cond.get("namespaceSelector")
        parsed = parse_selector(selector, f"{where}.namespaceSelector") if selector is not None else None
        if not names and parsed is None:
            raise SpecError(f"{where} needs namespaces or namespaceSelector")
        out.append(NamespaceCondition(tuple(names), parsed))
    return tuple(out)
