"""Render `target.template` with the fetched keys: the Secret's data built from templates.

Values are bytes; templates work on text. A value that is not UTF-8 passes through unchanged
(surrogateescape), so `{{ .cert | b64enc }}` of a binary value is still its exact base64.
Errors name template keys and fetched key names, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import urllib.parse
from collections.abc import Callable, Mapping

from tmpfs_secrets.api.external_secret import TargetTemplate
from tmpfs_secrets.api.template import Call, Expr, Key, Literal, Template
from tmpfs_secrets.errors import PropertyError


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _b64dec(text: str) -> str:
    try:
        return _text(base64.b64decode(_bytes(text), validate=True))
    except (binascii.Error, ValueError):
        raise PropertyError("b64dec was given text that is not base64") from None


_FUNCTIONS: dict[str, Callable[..., str]] = {
    "b64enc": lambda s: base64.b64encode(_bytes(s)).decode("ascii"),
    "b64dec": _b64dec,
    "upper": str.upper,
    "lower": str.lower,
    "trim": str.strip,
    "trimPrefix": lambda prefix, s: s.removeprefix(prefix),
    "trimSuffix": lambda suffix, s: s.removesuffix(suffix),
    "replace": lambda old, new, s: s.replace(old, new),
    "quote": lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"',
    "squote": lambda s: "'" + s + "'",
    "urlquery": lambda s: urllib.parse.quote_plus(s, encoding="utf-8", errors="surrogateescape"),
    "toString": lambda s: s,
    "default": lambda fallback, s: s or fallback,
    "sha256sum": lambda s: hashlib.sha256(_bytes(s)).hexdigest(),
}


def render(template: Template, values: Mapping[str, bytes], field: str) -> bytes:
    """The template's output; PropertyError if it reads a key the sources did not produce."""
    out: list[str] = []
    for part in template.parts:
        out.append(part if isinstance(part, str) else _eval(part, values, field))
    return _bytes("".join(out))


def _eval(expr: Expr, values: Mapping[str, bytes], field: str) -> str:
    if isinstance(expr, Literal):
        return expr.text
    if isinstance(expr, Key):
        if expr.name not in values:
            raise PropertyError(
                f"{field} reads key {expr.name!r}, which the sources did not produce; "
                "name a secretKey of spec.data or a key from spec.dataFrom"
            )
        return _text(values[expr.name])
    assert isinstance(expr, Call)
    args = [_eval(a, values, field) for a in expr.args]
    try:
        return _FUNCTIONS[expr.function](*args)
    except PropertyError as exc:
        raise PropertyError(f"{field}: {exc.message}") from None


def apply_template(
    template: TargetTemplate, data: Mapping[str, bytes], versions: Mapping[str, str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The key set after `target.template`: its data keys, plus the fetched keys with Merge."""
    if not template.data:
        return dict(data), dict(versions)
    out: dict[str, bytes] = dict(data) if template.merge_policy == "Merge" else {}
    out_versions: dict[str, str] = dict(versions) if template.merge_policy == "Merge" else {}
    for key, tpl in template.data:
        out[key] = render(tpl, data, f"spec.target.template.data.{key}")
        read = sorted(tpl.keys())
        digest = hashlib.sha256("\0".join(f"{k}={versions.get(k, '')}" for k in read).encode())
        out_versions[key] = "template:" + digest.hexdigest()[:12]
    return out, out_versions
