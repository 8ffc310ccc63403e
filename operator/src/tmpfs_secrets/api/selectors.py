"""Kubernetes label selectors (matchLabels, matchExpressions) for ClusterSecretStore conditions.

The engine evaluates them itself against the namespace labels it is given, so that store
admission does not depend on a Kubernetes list call with a selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.errors import SpecError

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values  # NotIn


@dataclass(frozen=True)
class LabelSelector:
    """An empty selector matches everything, as in Kubernetes."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        return all(req.matches(labels) for req in self.match_expressions)


def parse_selector(raw: object, field: str) -> LabelSelector:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{field} must be an object with matchLabels and/or matchExpressions")
    labels_raw: Any = raw.get("matchLabels") or {}
    if not isinstance(labels_raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels_raw.items()
    ):
        raise SpecError(f"{field}.matchLabels must map label names to string values")
    exprs_raw: Any = raw.get("matchExpressions") or []
    if not isinstance(exprs_raw, list):
        raise SpecError(f"{field}.matchExpressions must be a list")
    exprs = []
    for i, expr in enumerate(exprs_raw):
        where = f"{field}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
            raise SpecError(f"{where} needs a string 'key'")
        op = expr.get("operator")
        if op not in _OPERATORS:
            raise SpecError(f"{where}.operator must be one of {', '.join(_OPERATORS)}")
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SpecError(f"{where}.values must be a list of strings")
        if op in ("In", "NotIn") and not values:
            raise SpecError(f"{where}: operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise SpecError(f"{where}: operator {op} takes no values; remove 'values'")
        exprs.append(Requirement(expr["key"], op, tuple(values)))
    return LabelSelector(tuple(sorted(labels_raw.items())), tuple(exprs))
