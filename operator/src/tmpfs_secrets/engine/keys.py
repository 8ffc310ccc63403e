"""How fetched values become Secret keys: properties, extract, find, and the content hash.

Property paths: `property` first names a top-level JSON key exactly (so a key that contains dots
still works); otherwise it is a path split on '.', where '\\.' is a literal dot and '\\\\' a
literal backslash, and a numeric segment indexes a JSON array (`hosts.0`). Strings are delivered
as they are; any other JSON value (number, boolean, null, object, array) as compact JSON.

extract: every top-level key of the JSON object becomes a Secret key, with the same value rules.
find: a parameter's key is its name relative to `find.path`, with '/' replaced by '_'
(`/shop/prod/db/host` under `/shop/prod/` becomes `db_host`).

A key Kubernetes would refuse is skipped and reported, so one bad key never keeps the good keys
from being delivered. Messages never quote a JSON key or any other text of a value: only how many
keys were skipped, and the names of parameters (which are AWS names, not values).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tmpfs_secrets.api.external_secret import SECRET_KEY_RULE, valid_secret_key
from tmpfs_secrets.errors import PropertyError, SyncError
from tmpfs_secrets.providers.base import Fetched, Found

_MISSING = object()


def split_path(prop: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    chars = iter(prop)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in (".", "\\") else ch + nxt)
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def encode(value: Any, what: str = "the value") -> bytes:
    """UTF-8 of a string, compact JSON of anything else; PropertyError for text that is not
    Unicode (JSON can escape a lone surrogate, which has no UTF-8 form)."""
    try:
        if isinstance(value, str):
            return value.encode()
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise PropertyError(
            f"{what} holds JSON text that is not valid Unicode (an unpaired surrogate escape such as "
            "\\ud800); fix the value in AWS"
        ) from None


def parse_json(value: Fetched, what: str, field: str) -> Any:
    try:
        return json.loads(value.value.decode())
    except (UnicodeDecodeError, ValueError):
        kind = "binary" if value.binary else "not JSON"
        raise PropertyError(
            f"{what} is {kind}, so {field} cannot be applied; store a JSON object in it or remove {field}"
        ) from None


def lookup_property(value: Fetched, prop: str, what: str, field: str = "remoteRef.property") -> bytes:
    return encode(property_node(parse_json(value, what, field), prop, what, field), what)


def property_node(doc: Any, prop: str, what: str, field: str) -> Any:
    """The JSON node a property names: a top-level key exactly, else a '.'-separated path."""
    if isinstance(doc, dict) and prop in doc:
        return doc[prop]
    node: Any = doc
    for segment in split_path(prop):
        node = _step(node, segment)
        if node is _MISSING:
            raise PropertyError(
                f"{what} has no JSON property {prop!r}; properties are looked up in its JSON object, nested "
                f"with '.' (write '\\.' for a literal dot); check {field}"
            )
    return node


def decode(raw: bytes, strategy: str, what: str) -> bytes:
    """Apply a decodingStrategy (ESO's): None, Base64, Base64URL, or Auto (either, else as is)."""
    if strategy == "None":
        return raw
    compact = b"".join(raw.split())
    for kind in ("Base64", "Base64URL"):
        if strategy not in (kind, "Auto"):
            continue
        padded = compact + b"=" * (-len(compact) % 4)
        try:
            if kind == "Base64":
                return base64.b64decode(padded, validate=True)
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            continue
    if strategy == "Auto":
        return raw
    raise PropertyError(f"{what} is not {strategy}-encoded; check decodingStrategy (Auto keeps such values)")


def _step(node: Any, segment: str) -> Any:
    if isinstance(node, dict):
        return node.get(segment, _MISSING)
    if isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
        return node[int(segment)]
    return _MISSING


def extract(
    value: Fetched, what: str, prop: str | None = None
) -> tuple[dict[str, bytes], tuple[SyncError, ...]]:
    """The valid keys of the JSON object (or of its object at `prop`), and a problem naming how
    many keys were skipped."""
    doc = parse_json(value, what, "dataFrom.extract")
    if prop:
        doc = property_node(doc, prop, what, "dataFrom.extract.property")
    if not isinstance(doc, dict):
        where = f"property {prop!r} of {what}" if prop else what
        raise PropertyError(
            f"{where} is JSON but not an object; dataFrom.extract needs a JSON object of keys"
        )
    bad = sum(1 for k in doc if not valid_secret_key(k))
    data = {k: encode(v, what) for k, v in doc.items() if valid_secret_key(k)}
    problems: tuple[SyncError, ...] = ()
    if bad:
        problems = (
            PropertyError(
                f"{what} has {bad} top-level {'key that is' if bad == 1 else 'keys that are'} not valid "
                f"Secret {'key' if bad == 1 else 'keys'} ({SECRET_KEY_RULE}); skipped, the other keys "
                "are delivered; rename them in AWS or use spec.data with remoteRef.property for them"
            ),
        )
    return data, problems


def find_key(path: str, name: str) -> str:
    prefix = path if path.endswith("/") else path + "/"
    rel = name[len(prefix) :] if name.startswith(prefix) else name.lstrip("/")
    return rel.replace("/", "_")


def found_keys(found: Found) -> tuple[dict[str, bytes], dict[str, str], tuple[SyncError, ...]]:
    data: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    owner: dict[str, str] = {}
    invalid: list[str] = []
    for name in sorted(found.parameters):
        key = find_key(found.path, name)
        if key in owner:
            raise PropertyError(
                f"parameters {owner[key]} and {name} under {found.path} both map to key {key!r} "
                "('/' becomes '_'); rename one of them or use spec.data for them"
            )
        if not valid_secret_key(key):
            invalid.append(name)
            continue
        owner[key] = name
        data[key] = found.parameters[name].value
        versions[key] = found.parameters[name].version
    problems: tuple[SyncError, ...] = ()
    if invalid:
        shown = ", ".join(invalid[:3]) + (f" and {len(invalid) - 3} more" if len(invalid) > 3 else "")
        problems = (
            PropertyError(
                f"parameters under {found.path} whose keys are not valid Secret keys were skipped "
                f"({shown}; {SECRET_KEY_RULE}); the other keys are delivered; rename them or use spec.data"
            ),
        )
    return data, versions, problems


def content_hash(data: Mapping[str, bytes]) -> str:
    """sha256 over each key and value in key order, each prefixed by its 8-byte length: safe to show."""
    digest = hashlib.sha256()
    for key in sorted(data):
        raw_key = key.encode()
        for part in (raw_key, data[key]):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return "sha256:" + digest.hexdigest()
