"""Status condition and event messages have a length cap, with a visible marker when cut."""

from __future__ import annotations

from tmpfs_secrets.kube.conditions import MAX_MESSAGE, capped, with_condition


def test_long_messages_are_cut_with_a_marker() -> None:
    long = "x" * 5000
    (cond,) = with_condition(
        None, type_="Ready", status=False, reason="ProviderError", message=long, observed_generation=1, now=0
    )
    assert len(cond["message"]) == MAX_MESSAGE and cond["message"].endswith("(cut)")
    assert capped("short") == "short"
    assert len(capped(long, 100)) == 100
