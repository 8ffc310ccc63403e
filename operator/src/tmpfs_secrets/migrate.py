"""`tmpfs-secrets migrate`: convert External Secrets Operator manifests for AWS into ours.

Most fields carry over under the same name; a few are spelled differently, a few mean something
else, and some have no counterpart. Every field is accounted for: converted, converted with a
note (the meaning differs; review it), or not converted (left out of the output and listed, with
what to do instead). Nothing is dropped silently. Documents that are not ESO objects pass through
unchanged, so a whole file of manifests can be converted at once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tmpfs_secrets.api.template import parse_template
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.vocabulary import (
    API_VERSION,
    CLUSTER_SECRET_STORE,
    EXTERNAL_SECRET,
    MERGE_ANNOTATION,
    SECRET_STORE,
    STORE_KINDS,
)

ESO_GROUP = "external-secrets.io"
_ROLE_ARN_PREFIX = "arn:"
_META_KEPT = ("name", "namespace", "labels", "annotations")
_DECODING = ("None", "Base64", "Base64URL", "Auto")


@dataclass(frozen=True)
class Note:
    """One field that was not converted (`dropped`) or whose meaning differs (review it)."""

    obj: str  # e.g. "ExternalSecret shop/db"
    field: str
    text: str
    dropped: bool

    def __str__(self) -> str:
        label = "not converted" if self.dropped else "review"
        return f"{self.obj}: {self.field}: {label}: {self.text}"


@dataclass
class Result:
    documents: list[dict[str, Any]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not any(n.dropped for n in self.notes)


class _Notes:
    def __init__(self, obj: str, out: list[Note]) -> None:
        self.obj = obj
        self.out = out

    def drop(self, where: str, text: str) -> None:
        self.out.append(Note(self.obj, where, text, dropped=True))

    def review(self, where: str, text: str) -> None:
        self.out.append(Note(self.obj, where, text, dropped=False))

    def rest(self, raw: Mapping[str, Any], where: str, known: Iterable[str], text: str) -> None:
        for key in sorted(set(raw) - set(known)):
            self.drop(f"{where}.{key}" if where else key, text)


def migrate(documents: Iterable[Any]) -> Result:
    """Convert every ESO object among `documents`; others pass through as they are."""
    result = Result()
    for doc in documents:
        if doc is None:
            continue
        api = str(doc.get("apiVersion", "")) if isinstance(doc, Mapping) else ""
        if api.split("/")[0] != ESO_GROUP:
            result.documents.append(doc)
            continue
        kind = str(doc.get("kind", ""))
        meta = doc.get("metadata") or {}
        name = (
            f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
        )
        notes = _Notes(f"{kind} {name}", result.notes)
        if kind in STORE_KINDS:
            converted = _store(doc, kind, notes)
        elif kind == EXTERNAL_SECRET.kind:
            converted = _external_secret(doc, notes)
        else:
            notes.drop("kind", f"{kind} has no counterpart in tmpfs-secrets; the object is left out")
            continue
        if converted is not None:
            result.documents.append(converted)
    return result


def _metadata(doc: Mapping[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    return {k: copy.deepcopy(meta[k]) for k in _META_KEPT if meta.get(k)}


def _store(doc: Mapping[str, Any], kind: str, notes: _Notes) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    provider = spec.get("provider") or {}
    if "aws" not in provider:
        notes.drop("spec.provider", "only AWS providers (Secrets Manager, Parameter Store) can be converted")
        return None
    notes.rest(provider, "spec.provider", ("aws",), "only the AWS provider can be converted")
    aws = provider["aws"] or {}
    out_aws: dict[str, Any] = {}
    service = aws.get("service", "SecretsManager")
    if service not in ("SecretsManager", "ParameterStore"):
        notes.drop(
            "spec.provider.aws.service", f"{service!r} is not supported; use SecretsManager or ParameterStore"
        )
        return None
    out_aws["service"] = service
    if aws.get("region"):
        out_aws["region"] = aws["region"]
    else:
        notes.drop(
            "spec.provider.aws.region",
            "is required here; set the AWS region (ESO fell back to the environment)",
        )
    if aws.get("role"):
        out_aws["role"] = aws["role"]
        if not str(aws["role"]).startswith(_ROLE_ARN_PREFIX):
            notes.drop(
                "spec.provider.aws.role",
                f"{aws['role']!r} is not a role ARN; write the full ARN (arn:aws:iam::<account>:role/<name>) "
                "or the store is refused",
            )
    if aws.get("externalID"):
        out_aws["externalID"] = aws["externalID"]
    if aws.get("sessionTagsPolicy") not in (None, "None") or aws.get("sessionTags"):
        notes.review(
            "spec.provider.aws.sessionTagsPolicy",
            "tmpfs-secrets always tags AssumeRole sessions, with the keys kubernetes-namespace, "
            "secret-store and secret-store-kind (not esoNamespace, ...): update trust policies "
            "(docs/tenancy.md)",
        )
    known = ("service", "region", "role", "externalID", "auth", "sessionTagsPolicy")
    notes.rest(aws, "spec.provider.aws", known, "has no counterpart in tmpfs-secrets")
    auth = _auth(aws.get("auth") or {}, kind, (doc.get("metadata") or {}).get("namespace"), notes)
    if auth:
        out_aws["auth"] = auth
    elif kind == SECRET_STORE.kind and not out_aws.get("role"):
        notes.review(
            "spec.provider.aws.auth",
            "without auth and role a SecretStore would use the operator's own identity, which the "
            "operator allows only with --allow-operator-identity-for-secretstores; prefer "
            "auth.serviceAccountRef or a role (docs/tenancy.md)",
        )
    out_spec: dict[str, Any] = {"provider": {"aws": out_aws}}
    if kind == CLUSTER_SECRET_STORE.kind and spec.get("conditions"):
        out_spec["conditions"] = _conditions(spec["conditions"], notes)
    notes.rest(spec, "spec", ("provider", "conditions"), "has no counterpart in tmpfs-secrets")
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": _metadata(doc), "spec": out_spec}


def _auth(auth: Mapping[str, Any], kind: str, namespace: str | None, notes: _Notes) -> dict[str, Any]:
    where = "spec.provider.aws.auth"
    out: dict[str, Any] = {}
    jwt = auth.get("jwt") or {}
    if jwt.get("serviceAccountRef"):
        ref = dict(jwt["serviceAccountRef"])
        if kind == SECRET_STORE.kind and "namespace" in ref:
            given = ref.pop("namespace")
            if given != namespace:
                notes.drop(
                    f"{where}.jwt.serviceAccountRef.namespace",
                    "a SecretStore may only use a ServiceAccount of its own namespace",
                )
        out["serviceAccountRef"] = {k: v for k, v in ref.items() if k in ("name", "namespace")}
        notes.rest(ref, f"{where}.jwt.serviceAccountRef", ("name", "namespace"), "has no counterpart")
        notes.rest(jwt, f"{where}.jwt", ("serviceAccountRef",), "has no counterpart")
    secret = auth.get("secretRef") or {}
    if secret:
        refs = {}
        for key in ("accessKeyIDSecretRef", "secretAccessKeySecretRef"):
            if secret.get(key):
                ref = dict(secret[key])
                if kind == SECRET_STORE.kind:
                    ref.pop("namespace", None)
                refs[key] = ref
        out["secretRef"] = refs
        notes.rest(
            secret,
            f"{where}.secretRef",
            ("accessKeyIDSecretRef", "secretAccessKeySecretRef"),
            "temporary session credentials are not supported; use a role or IRSA instead",
        )
    notes.rest(auth, where, ("jwt", "secretRef"), "has no counterpart in tmpfs-secrets")
    if len(out) > 1:
        notes.drop(where, "both jwt and secretRef are set; keep one")
    return out


def _conditions(raw: list[Any], notes: _Notes) -> list[dict[str, Any]]:
    out = []
    for i, cond in enumerate(raw):
        kept = {k: copy.deepcopy(cond[k]) for k in ("namespaces", "namespaceSelector") if cond.get(k)}
        notes.rest(
            cond, f"spec.conditions[{i}]", ("namespaces", "namespaceSelector"), "list the namespaces instead"
        )
        if kept:
            out.append(kept)
    return out


def _external_secret(doc: Mapping[str, Any], notes: _Notes) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    out: dict[str, Any] = {}
    ref = spec.get("secretStoreRef")
    if not ref:
        notes.drop("spec.secretStoreRef", "is required here (per-item sourceRef is not supported)")
        return None
    out["secretStoreRef"] = {k: ref[k] for k in ("name", "kind") if k in ref}
    notes.rest(ref, "spec.secretStoreRef", ("name", "kind"), "has no counterpart")
    for key in ("refreshInterval", "refreshPolicy"):
        if key in spec:
            out[key] = spec[key]
    data = []
    for i, item in enumerate(spec.get("data") or []):
        where = f"spec.data[{i}]"
        if item.get("sourceRef"):
            notes.drop(f"{where}.sourceRef", "generators and other stores per item are not supported")
            continue
        data.append(
            {
                "secretKey": item.get("secretKey"),
                "remoteRef": _remote_ref(item.get("remoteRef") or {}, f"{where}.remoteRef", notes),
            }
        )
        notes.rest(item, where, ("secretKey", "remoteRef", "sourceRef"), "has no counterpart")
    if data:
        out["data"] = data
    data_from = []
    for i, item in enumerate(spec.get("dataFrom") or []):
        converted = _data_from(item, f"spec.dataFrom[{i}]", notes)
        if converted is not None:
            data_from.append(converted)
    if data_from:
        out["dataFrom"] = data_from
    if "target" in spec:
        out["target"] = _target(spec["target"] or {}, notes)
    known = ("secretStoreRef", "refreshInterval", "refreshPolicy", "data", "dataFrom", "target")
    notes.rest(spec, "spec", known, "has no counterpart in tmpfs-secrets")
    if not data and not data_from:
        notes.drop("spec", "nothing left to fetch after conversion; the object is left out")
        return None
    return {"apiVersion": API_VERSION, "kind": EXTERNAL_SECRET.kind, "metadata": _metadata(doc), "spec": out}


def _remote_ref(raw: Mapping[str, Any], where: str, notes: _Notes) -> dict[str, Any]:
    out = {k: raw[k] for k in ("key", "property", "version") if raw.get(k) not in (None, "")}
    _strategies(raw, out, where, notes)
    notes.rest(
        raw,
        where,
        ("key", "property", "version", "decodingStrategy", "conversionStrategy", "metadataPolicy"),
        "has no counterpart",
    )
    return out


def _strategies(raw: Mapping[str, Any], out: dict[str, Any], where: str, notes: _Notes) -> None:
    decoding = raw.get("decodingStrategy")
    if decoding is not None:
        if decoding in _DECODING:
            out["decodingStrategy"] = decoding
        else:
            notes.drop(f"{where}.decodingStrategy", f"{decoding!r} is not one of {', '.join(_DECODING)}")
    if raw.get("conversionStrategy") not in (None, "Default"):
        notes.drop(f"{where}.conversionStrategy", "only Default is supported (keys are used as they are)")
    if raw.get("metadataPolicy") not in (None, "None"):
        notes.drop(f"{where}.metadataPolicy", "only None is supported (values, not AWS metadata)")


def _data_from(item: Mapping[str, Any], where: str, notes: _Notes) -> dict[str, Any] | None:
    notes.rest(item, where, ("extract", "find"), "has no counterpart (rewrite, sourceRef: not supported)")
    if item.get("extract"):
        raw = item["extract"]
        out = {k: raw[k] for k in ("key", "property", "version") if raw.get(k) not in (None, "")}
        _strategies(raw, out, f"{where}.extract", notes)
        notes.rest(
            raw,
            f"{where}.extract",
            ("key", "property", "version", "decodingStrategy", "conversionStrategy", "metadataPolicy"),
            "has no counterpart",
        )
        return {"extract": out}
    if item.get("find"):
        raw = item["find"]
        out = {k: copy.deepcopy(raw[k]) for k in ("path", "name", "tags") if raw.get(k)}
        if not out:
            notes.drop(f"{where}.find", "needs path, name or tags")
            return None
        _strategies(raw, out, f"{where}.find", notes)
        if "name" in out:
            notes.review(
                f"{where}.find.name.regexp",
                "a Python regular expression (RE2 and Python agree on common patterns; check lookarounds)",
            )
        notes.review(
            f"{where}.find",
            "keys are the names (after path) with '/' as '_'; name and tags need a SecretsManager store",
        )
        known = ("path", "name", "tags", "decodingStrategy", "conversionStrategy")
        notes.rest(raw, f"{where}.find", known, "has no counterpart")
        return {"find": out}
    return None


def _target(raw: Mapping[str, Any], notes: _Notes) -> dict[str, Any]:
    where = "spec.target"
    out: dict[str, Any] = {}
    if raw.get("name"):
        out["name"] = raw["name"]
    creation = raw.get("creationPolicy")
    if creation in ("Owner", "Orphan", "Merge"):
        out["creationPolicy"] = creation
        if creation == "Merge":
            notes.review(
                f"{where}.creationPolicy",
                f'Merge writes only into a Secret annotated {MERGE_ANNOTATION}: "true"',
            )
    elif creation is not None:
        notes.drop(f"{where}.creationPolicy", f"{creation!r} is not supported; use Owner, Orphan or Merge")
    deletion = raw.get("deletionPolicy")
    if deletion == "Retain":
        out["deletionPolicy"] = "Retain"
    elif deletion == "Merge":
        out["deletionPolicy"] = "Delete"  # our Delete removes the keys of gone sources: ESO's Merge
        notes.review(
            f"{where}.deletionPolicy", "ESO's Merge is our Delete: keys whose source is gone are removed"
        )
    elif deletion == "Delete":
        out["deletionPolicy"] = "Delete"
        notes.review(
            f"{where}.deletionPolicy",
            "our Delete removes the keys whose source is gone but never deletes the Secret itself "
            "(ESO's Delete does)",
        )
    elif deletion is not None:
        notes.drop(f"{where}.deletionPolicy", f"{deletion!r} is not supported")
    if "immutable" in raw:
        out["immutable"] = bool(raw["immutable"])
    if raw.get("template"):
        template = _template(raw["template"], notes)
        if template:
            out["template"] = template
    notes.rest(
        raw,
        where,
        ("name", "creationPolicy", "deletionPolicy", "immutable", "template"),
        "has no counterpart",
    )
    return out


def _template(raw: Mapping[str, Any], notes: _Notes) -> dict[str, Any]:
    where = "spec.target.template"
    out: dict[str, Any] = {}
    version = raw.get("engineVersion", "v2")
    if version != "v2":
        notes.drop(f"{where}", f"engineVersion {version} templates are not supported; rewrite them for v2")
        return {}
    for key in ("type", "mergePolicy"):
        if raw.get(key):
            out[key] = raw[key]
    meta = raw.get("metadata") or {}
    kept_meta = {}
    for part in ("labels", "annotations"):
        values = meta.get(part) or {}
        plain = {k: v for k, v in values.items() if isinstance(v, str) and "{{" not in v}
        for k in sorted(set(values) - set(plain)):
            notes.drop(f"{where}.metadata.{part}.{k}", "templates are allowed only in template.data")
        if plain:
            kept_meta[part] = plain
    if kept_meta:
        out["metadata"] = kept_meta
    notes.rest(meta, f"{where}.metadata", ("labels", "annotations"), "has no counterpart")
    data = {}
    for key, text in (raw.get("data") or {}).items():
        field = f"{where}.data.{key}"
        try:
            parse_template(str(text), field)
        except SpecError as exc:
            notes.drop(field, exc.message)
            continue
        data[key] = text
    if data:
        out["data"] = data
    notes.rest(
        raw,
        where,
        ("engineVersion", "type", "mergePolicy", "metadata", "data"),
        "templateFrom and literal are not supported",
    )
    return out
