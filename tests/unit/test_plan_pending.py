"""`Plan.pending`: whether a fetch of a source is running or due, so its result is still to come."""

from __future__ import annotations

from tmpfs_secrets.providers.base import GET, Source
from tmpfs_secrets.scheduler import Backoff, Plan

S = Source(("default",), "SecretsManager", "us-east-1", GET, "app/x")


def plan() -> Plan:
    return Plan(lambda s: 20, lambda s: False, Backoff(base=5, cap=300, random=lambda: 1.0))


def test_pending_while_due_in_flight_or_asked_again() -> None:
    p = plan()
    assert not p.pending(S, 0)  # unknown source
    p.set_owner("a", {S: 60.0}, 0, run_now=[S])
    assert p.pending(S, 0)  # due now
    assert p.take_due(0) == [[S]]
    assert p.pending(S, 0)  # in flight
    p.run_now(S, 1)  # asked for again meanwhile: a second fetch follows this one
    p.complete(S, True, 2)
    assert p.pending(S, 2)
    assert p.take_due(2) == [[S]]
    p.complete(S, True, 3)
    assert not p.pending(S, 3)
    due = p.due(S)
    assert due is not None and 3 < due <= 63
    assert p.pending(S, due)  # due again one interval later


def test_a_backing_off_source_is_not_pending_until_its_retry() -> None:
    p = plan()
    p.set_owner("a", {S: 60.0}, 0, run_now=[S])
    p.take_due(0)
    p.complete(S, False, 1)
    assert not p.pending(S, 1)
    assert p.pending(S, 1 + 5)  # first retry after base delay (jitter fixed at 100%)


def test_interval_zero_is_not_pending_once_fetched() -> None:
    p = plan()
    p.set_owner("a", {S: 0.0}, 0, run_now=[S])
    p.take_due(0)
    p.complete(S, True, 1)
    assert not p.pending(S, 10**9)
