"""AdmissionReview v1 in and out: the request's parts we use, and the three kinds of answer.

An answer is built from a `Verdict` (allowed or not, a message, warnings, a JSONPatch), so the
admission logic stays plain functions over dicts that unit tests call directly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
MAX_WARNING = 256  # the API server truncates longer warnings


@dataclass(frozen=True)
class Verdict:
    allowed: bool = True
    message: str = ""  # why not (shown to the user by kubectl)
    warnings: tuple[str, ...] = ()
    patch: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # JSONPatch operations

    @classmethod
    def deny(cls, message: str) -> Verdict:
        return cls(allowed=False, message=message)


@dataclass(frozen=True)
class Request:
    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, Any]
    dry_run: bool

    @classmethod
    def parse(cls, review: Mapping[str, Any]) -> Request:
        """The request of an AdmissionReview; raises ValueError for anything else."""
        if review.get("kind") != "AdmissionReview" or not isinstance(review.get("request"), Mapping):
            raise ValueError("expected an AdmissionReview with a request")
        req = review["request"]
        obj = req.get("object")
        return cls(
            uid=str(req.get("uid") or ""),
            kind=str((req.get("kind") or {}).get("kind") or ""),
            operation=str(req.get("operation") or ""),
            namespace=str(req.get("namespace") or ""),
            name=str(req.get("name") or ""),
            object=obj if isinstance(obj, Mapping) else {},
            dry_run=bool(req.get("dryRun")),
        )


def response(uid: str, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview answer for a verdict."""
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    if verdict.warnings:
        answer["warnings"] = [w[:MAX_WARNING] for w in verdict.warnings]
    if verdict.allowed and verdict.patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(list(verdict.patch)).encode()).decode()
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def escape(segment: str) -> str:
    """A JSON Pointer segment (RFC 6901) for a map key such as an annotation name."""
    return segment.replace("~", "~0").replace("/", "~1")
