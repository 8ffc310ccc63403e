"""ExternalSecret specs: what to fetch, from which store, how often, and how to deliver it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.api import _fields as f
from tmpfs_secrets.api.duration import (
    DEFAULT_MIN_REFRESH_INTERVAL,
    DEFAULT_REFRESH_INTERVAL,
    check_refresh_interval,
    parse_duration,
)
from tmpfs_secrets.api.template import Template, parse_template
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.vocabulary import READY_CONDITION, REFRESH_ANNOTATION, SECRET_STORE, STORE_KINDS

DECODING_STRATEGIES = ("None", "Base64", "Base64URL", "Auto")
REFRESH_POLICIES = ("Periodic", "CreatedOnce", "OnChange")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# What Kubernetes accepts as a Secret key (IsConfigMapKey), said the way a user can act on.
SECRET_KEY_RULE = (
    "use 1 to 253 letters, digits, '-', '_' and '.', not '.' or '..', and not starting with '..'"
)


@dataclass(frozen=True, slots=True)
class StoreRef:
    name: str
    kind: str = SECRET_STORE.kind


@dataclass(frozen=True, slots=True)
class RemoteRef:
    key: str
    property: str | None = None
    version: str | None = None
    decoding_strategy: str = "None"  # None | Base64 | Base64URL | Auto, applied after property


@dataclass(frozen=True, slots=True)
class DataItem:
    secret_key: str
    remote: RemoteRef


@dataclass(frozen=True, slots=True)
class Extract:
    """Every top-level JSON key of one secret/parameter becomes a key."""

    key: str
    version: str | None = None
    property: str | None = None  # extract the keys of this nested JSON object instead
    decoding_strategy: str = "None"  # applied to every extracted value


@dataclass(frozen=True, slots=True)
class Find:
    """Many values at once. Parameter Store: every parameter under `path` (recursively).
    Secrets Manager: every secret whose name starts with `path`, matches the regular expression
    `name` and carries all `tags` (ListSecrets, then BatchGetSecretValue)."""

    path: str | None
    decoding_strategy: str = "None"
    name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def query(self) -> str:
        """A canonical text of the search: the source key it is cached and scheduled under."""
        if self.name is None and not self.tags and self.path is not None:
            return self.path  # a Parameter Store path, as before
        return json.dumps({"path": self.path, "name": self.name, "tags": dict(self.tags)}, sort_keys=True)

    @property
    def by_path_only(self) -> bool:
        return self.name is None and not self.tags


@dataclass(frozen=True, slots=True)
class TargetTemplate:
    """`target.template`: the Secret's type, metadata, and data built from the fetched keys."""

    type: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    data: tuple[tuple[str, Template], ...] = ()
    merge_policy: str = "Replace"  # Replace: only the templated keys; Merge: fetched keys too


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    delivery: str = "Secret"
    creation_policy: str = "Owner"
    deletion_policy: str = "Retain"
    immutable: bool = False
    template: TargetTemplate | None = None


@dataclass(frozen=True, slots=True)
class ExternalSecretSpec:
    namespace: str
    name: str
    generation: int
    store_ref: StoreRef
    refresh_interval: float  # seconds; 0 = fetch once
    data: tuple[DataItem, ...]
    data_from: tuple[Extract | Find, ...]
    target: Target
    refresh_request: str | None  # value of the refresh-requested annotation
    synced_before: bool  # a Secret target synced at this generation (an operator restart, not a new object)
    refresh_policy: str = "Periodic"  # CreatedOnce and OnChange fetch once (refresh_interval is 0)


def valid_secret_key(key: str) -> bool:
    """What the API server accepts as a Secret key (and as a file name in a Secret volume)."""
    return bool(SECRET_KEY.match(key)) and key != "." and not key.startswith("..")


def parse_external_secret(
    body: Mapping[str, Any], *, min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL
) -> ExternalSecretSpec:
    """Parse an ExternalSecret object; raises SpecError saying which field to change.

    `min_refresh_interval` is the operator's floor for refreshInterval (0, fetch once, aside).
    """
    namespace, name, generation = f.metadata(body)
    if not namespace:
        raise SpecError("an ExternalSecret needs metadata.namespace")
    spec = f.mapping(body, "spec", "spec", required=True)
    ref = f.mapping(spec, "secretStoreRef", "spec.secretStoreRef", required=True)
    store_ref = StoreRef(
        f.required_string(ref, "name", "spec.secretStoreRef.name"),
        f.choice(ref, "kind", "spec.secretStoreRef.kind", STORE_KINDS, SECRET_STORE.kind),
    )
    raw_interval = spec.get("refreshInterval")
    interval = DEFAULT_REFRESH_INTERVAL
    if raw_interval is not None:
        interval = parse_duration(raw_interval, "spec.refreshInterval")
        interval = check_refresh_interval(interval, raw_interval, min_refresh_interval)
    policy = f.choice(spec, "refreshPolicy", "spec.refreshPolicy", REFRESH_POLICIES, "Periodic")
    if policy != "Periodic":
        interval = 0.0  # fetched when created (and, with OnChange, when the spec changes)
    data = tuple(_parse_data(i, raw) for i, raw in enumerate(f.items(spec, "data", "spec.data")))
    seen: set[str] = set()
    for i, item in enumerate(data):
        if item.secret_key in seen:
            raise SpecError(
                f"spec.data[{i}].secretKey {item.secret_key!r} appears twice; each key must be unique"
            )
        seen.add(item.secret_key)
    data_from = tuple(
        _parse_data_from(i, raw) for i, raw in enumerate(f.items(spec, "dataFrom", "spec.dataFrom"))
    )
    if not data and not data_from:
        raise SpecError("spec.data or spec.dataFrom must list at least one source")
    target = _parse_target(f.mapping(spec, "target", "spec.target"), name)
    meta = f.mapping(body, "metadata", "metadata")
    annotations = meta.get("annotations") or {}
    request = annotations.get(REFRESH_ANNOTATION) if isinstance(annotations, Mapping) else None
    return ExternalSecretSpec(
        namespace=namespace,
        name=name,
        generation=generation,
        store_ref=store_ref,
        refresh_interval=interval,
        data=data,
        data_from=data_from,
        target=target,
        refresh_request=str(request) if request is not None else None,
        # Direct values live only in the operator's memory: after a restart nothing holds them,
        # and pods that start meanwhile wait on them, so a Direct object is fetched as if new
        # (one call per source, shared by every pod), never left for its slot in the schedule.
        synced_before=target.delivery == "Secret" and _synced_before(body, generation),
        refresh_policy=policy,
    )


def _parse_data(i: int, raw: object) -> DataItem:
    where = f"spec.data[{i}]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object with secretKey and remoteRef")
    key = f.required_string(raw, "secretKey", f"{where}.secretKey")
    if not valid_secret_key(key):
        raise SpecError(f"{where}.secretKey {key!r} is not a valid Secret key; {SECRET_KEY_RULE}")
    remote = f.mapping(raw, "remoteRef", f"{where}.remoteRef", required=True)
    return DataItem(
        key,
        RemoteRef(
            f.required_string(remote, "key", f"{where}.remoteRef.key"),
            f.string(remote, "property", f"{where}.remoteRef.property"),
            f.string(remote, "version", f"{where}.remoteRef.version"),
            _decoding(remote, f"{where}.remoteRef"),
        ),
    )


def _decoding(raw: Mapping[str, Any], where: str) -> str:
    _eso_defaults(raw, where)
    return f.choice(raw, "decodingStrategy", f"{where}.decodingStrategy", DECODING_STRATEGIES, "None")


def _eso_defaults(raw: Mapping[str, Any], where: str) -> None:
    """ESO fields we accept only with ESO's default value (the only behaviour we implement)."""
    for key, default in (("conversionStrategy", "Default"), ("metadataPolicy", "None")):
        value = raw.get(key)
        if value is not None and value != default:
            raise SpecError(f"{where}.{key} {value!r} is not supported; remove it (only {default!r} is)")


def _parse_data_from(i: int, raw: object) -> Extract | Find:
    where = f"spec.dataFrom[{i}]"
    if not isinstance(raw, Mapping) or ("extract" in raw) == ("find" in raw):
        raise SpecError(f"{where} needs exactly one of extract or find")
    if "extract" in raw:
        ext = f.mapping(raw, "extract", f"{where}.extract", required=True)
        return Extract(
            f.required_string(ext, "key", f"{where}.extract.key"),
            f.string(ext, "version", f"{where}.extract.version"),
            f.string(ext, "property", f"{where}.extract.property"),
            _decoding(ext, f"{where}.extract"),
        )
    find = f.mapping(raw, "find", f"{where}.find", required=True)
    unsupported = sorted(set(find) - {"path", "name", "tags", "decodingStrategy", "conversionStrategy"})
    if unsupported:
        raise SpecError(f"{where}.find supports path, name and tags; remove {', '.join(unsupported)}")
    path = f.string(find, "path", f"{where}.find.path")
    name_raw = f.mapping(find, "name", f"{where}.find.name")
    name = f.string(name_raw, "regexp", f"{where}.find.name.regexp")
    if name_raw and name is None:
        raise SpecError(f"{where}.find.name needs regexp")
    if name is not None:
        try:
            re.compile(name)
        except re.error as exc:
            raise SpecError(f"{where}.find.name.regexp is not a regular expression ({exc.msg})") from None
    tags_raw = f.mapping(find, "tags", f"{where}.find.tags")
    if not all(isinstance(v, str) for v in tags_raw.values()):
        raise SpecError(f"{where}.find.tags must map tag keys to string values")
    if path is None and name is None and not tags_raw:
        raise SpecError(f"{where}.find needs path, name or tags")
    tags = tuple(sorted((str(k), str(v)) for k, v in tags_raw.items()))
    return Find(path, _decoding(find, f"{where}.find"), name, tags)


def _parse_template(raw: Mapping[str, Any]) -> TargetTemplate | None:
    where = "spec.target.template"
    tpl = f.mapping(raw, "template", where)
    if not tpl:
        return None
    version = tpl.get("engineVersion", "v2")
    if version != "v2":
        raise SpecError(f"{where}.engineVersion {version!r} is not supported; use v2 (or remove it)")
    meta = f.mapping(tpl, "metadata", f"{where}.metadata")
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    for part in ("labels", "annotations"):
        given = f.mapping(meta, part, f"{where}.metadata.{part}")
        for key, value in given.items():
            if not isinstance(value, str) or "{{" in value:
                raise SpecError(
                    f"{where}.metadata.{part}.{key} must be a plain string; templates are allowed "
                    "only in template.data"
                )
        pairs[part] = tuple(sorted((str(k), str(v)) for k, v in given.items()))
    data = []
    for key, text in sorted(f.mapping(tpl, "data", f"{where}.data").items()):
        field = f"{where}.data.{key}"
        if not valid_secret_key(str(key)):
            raise SpecError(f"{field}: {key!r} is not a valid Secret key; {SECRET_KEY_RULE}")
        if not isinstance(text, str):
            raise SpecError(f"{field} must be a string")
        data.append((str(key), parse_template(text, field)))
    return TargetTemplate(
        type=f.string(tpl, "type", f"{where}.type"),
        labels=pairs["labels"],
        annotations=pairs["annotations"],
        data=tuple(data),
        merge_policy=f.choice(tpl, "mergePolicy", f"{where}.mergePolicy", ("Replace", "Merge"), "Replace"),
    )


def _parse_target(raw: Mapping[str, Any], default_name: str) -> Target:
    immutable = raw.get("immutable", False)
    if not isinstance(immutable, bool):
        raise SpecError("spec.target.immutable must be true or false")
    return Target(
        name=f.string(raw, "name", "spec.target.name") or default_name,
        delivery=f.choice(raw, "delivery", "spec.target.delivery", ("Secret", "Direct"), "Secret"),
        creation_policy=f.choice(
            raw, "creationPolicy", "spec.target.creationPolicy", ("Owner", "Orphan", "Merge"), "Owner"
        ),
        deletion_policy=f.choice(
            raw, "deletionPolicy", "spec.target.deletionPolicy", ("Retain", "Delete"), "Retain"
        ),
        immutable=immutable,
        template=_parse_template(raw),
    )


def _synced_before(body: Mapping[str, Any], generation: int) -> bool:
    status = body.get("status")
    if not isinstance(status, Mapping) or not status.get("contentHash"):
        return False
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == READY_CONDITION:
            return cond.get("observedGeneration") == generation
    return False
