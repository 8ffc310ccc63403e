"""Logging set-up for the operator process: plain text for people, JSON lines for log pipelines.

Kept in one place so every entry point (operator, demo, tests) formats records the same way, and
so the object a record is about (kopf attaches it as `k8s_ref`) shows up as structured fields.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

from tmpfs_secrets.config import LogFormat

# Attributes every LogRecord has; anything else was passed through `extra=` and is worth keeping.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            for field in ("kind", "namespace", "name"):
                if ref.get(field):
                    entry[field] = ref[field]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and key not in ("k8s_ref", "k8s_skip", "settings"):
                entry[key] = (
                    value if isinstance(value, str | int | float | bool) or value is None else str(value)
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time level logger [namespace/name] message`, the object taken from kopf's `k8s_ref`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        line = super().format(record)
        if isinstance(ref, dict) and ref.get("name"):
            where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else str(ref["name"])
            head, _, tail = line.partition(f" {record.name} ")
            line = f"{head} {record.name} [{where}] {tail}"
        return line


def configure(log_format: LogFormat = "text", *, verbose: bool = False) -> None:
    """Route every logger to stderr in the chosen format; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # botocore logs request bodies at DEBUG, and those carry secret values: never let them through.
    for noisy in ("botocore", "boto3", "urllib3", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf reports every handler run at INFO; that is debugging detail for this operator.
    for name in ("kopf", "kopf.objects"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
