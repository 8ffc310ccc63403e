"""Every reason the operator can report is in the enum and documented for users."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tmpfs_secrets.errors import Reason

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table_reasons(doc: str) -> set[str]:
    """The first column of every table row that names a reason: | `Reason` | ..."""
    return set(re.findall(r"^\| `([A-Za-z]+)` \|", doc, re.MULTILINE))


def test_target_reasons_are_part_of_the_fixed_set() -> None:
    assert Reason("TargetNotFound") is Reason.TARGET_NOT_FOUND
    assert Reason("TargetConflict") is Reason.TARGET_CONFLICT
    assert Reason("TargetWriteFailed") is Reason.TARGET_WRITE_FAILED


@pytest.mark.parametrize("doc", ["engine.md", "api.md"])
def test_every_reason_is_documented(doc: str) -> None:
    text = (DOCS / doc).read_text()
    section = text[text.index("## Reasons") :] if doc == "engine.md" else text[text.index("## Conditions") :]
    missing = {r.value for r in Reason} - table_reasons(section)
    assert not missing, f"docs/{doc} does not explain {sorted(missing)}"
