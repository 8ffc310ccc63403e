"""Small typed accessors for raw object dicts that raise `SpecError` naming the field's path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tmpfs_secrets.errors import SpecError


def mapping(raw: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(f"{field} is required")
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be an object")
    return value


def items(raw: Mapping[str, Any], key: str, field: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{field} must be a list")
    return value


def string(raw: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise SpecError(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise SpecError(f"{field} must be a string")
    return value


def required_string(raw: Mapping[str, Any], key: str, field: str) -> str:
    value = string(raw, key, field, required=True)
    assert value is not None
    return value


def choice(raw: Mapping[str, Any], key: str, field: str, allowed: tuple[str, ...], default: str) -> str:
    value = string(raw, key, field) or default
    if value not in allowed:
        raise SpecError(f"{field} {value!r} is not supported; use one of {', '.join(allowed)}")
    return value


def metadata(body: Mapping[str, Any]) -> tuple[str | None, str, int]:
    """(namespace, name, generation) of an object."""
    meta = mapping(body, "metadata", "metadata", required=True)
    name = required_string(meta, "name", "metadata.name")
    namespace = string(meta, "namespace", "metadata.namespace")
    generation = meta.get("generation") or 0
    return namespace, name, int(generation)
