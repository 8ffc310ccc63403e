"""Coalescing: sources run at once shortly after a batch of their group wait for one shared batch."""

from tmpfs_secrets.providers.base import GET, Source
from tmpfs_secrets.scheduler import Backoff, Plan

ID = ("default",)


def src(i: int) -> Source:
    return Source(ID, "SecretsManager", "us-east-1", GET, f"k{i}")


def plan(coalesce: float) -> Plan:
    return Plan(
        lambda s: 20, lambda s: False, Backoff(base=5, cap=300, random=lambda: 1.0), coalesce=coalesce
    )


def test_a_lone_run_now_goes_out_at_once() -> None:
    p = plan(0.1)
    p.set_owner("a", {src(0): 60.0}, 10.0, run_now=[src(0)])
    assert p.take_due(10.0) == [[src(0)]]


def test_run_now_within_the_window_after_a_batch_waits_and_shares_one_batch() -> None:
    p = plan(0.1)
    p.set_owner("a", {src(0): 60.0}, 10.0, run_now=[src(0)])
    assert p.take_due(10.0) == [[src(0)]]
    for i in range(1, 31):  # thirty creations, each with its own new source, within the window
        p.set_owner(f"es{i}", {src(i): 60.0}, 10.0 + i / 1000, run_now=[src(i)])
        assert p.take_due(10.0 + i / 1000) == []
    assert p.next_wake() == 10.1
    batches = p.take_due(10.1)
    assert sorted(len(b) for b in batches) == [10, 20]
    assert {s for b in batches for s in b} == {src(i) for i in range(1, 31)}


def test_without_a_window_every_run_now_goes_out_on_its_own() -> None:
    p = plan(0.0)
    p.set_owner("a", {src(0): 60.0}, 10.0, run_now=[src(0)])
    assert p.take_due(10.0) == [[src(0)]]
    p.set_owner("b", {src(1): 60.0}, 10.01, run_now=[src(1)])
    assert p.take_due(10.01) == [[src(1)]]


def test_in_flight_is_reported_until_complete() -> None:
    p = plan(0.1)
    p.set_owner("a", {src(0): 60.0}, 0.0, run_now=[src(0)])
    assert not p.in_flight(src(0))
    p.take_due(0.0)
    assert p.in_flight(src(0))
    p.complete(src(0), True, 0.5)
    assert not p.in_flight(src(0))
