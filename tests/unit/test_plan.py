import math
from collections import Counter

from tmpfs_secrets.providers.base import GET, Source
from tmpfs_secrets.scheduler import Backoff, Plan

ID = ("default",)


def src(
    i: int, service: str = "SecretsManager", version: str | None = None, identity: tuple[str, ...] = ID
) -> Source:
    return Source(identity, service, "us-east-1", GET, f"k{i}", version)


def plan(**kw: object) -> Plan:
    return Plan(
        batch_size=lambda s: 10 if s.service == "ParameterStore" else 20,
        pinned=lambda s: s.version == "pinned",
        backoff=Backoff(base=5, cap=300, random=lambda: 1.0),
        **kw,  # type: ignore[arg-type]
    )


def complete_all(p: Plan, batches: list[list[Source]], now: float, ok: bool = True) -> None:
    for batch in batches:
        for s in batch:
            p.complete(s, ok, now)


def test_new_sources_run_at_once_in_full_batches() -> None:
    p = plan()
    sm = {src(i): 60.0 for i in range(45)}
    ssm = {src(i, "ParameterStore"): 60.0 for i in range(25)}
    p.set_owner("a", sm, 0, run_now=sm)
    p.set_owner("b", ssm, 0, run_now=ssm)
    batches = p.take_due(0)
    sizes = Counter((b[0].service, len(b)) for b in batches)
    assert sizes == Counter(
        {
            ("SecretsManager", 20): 2,
            ("SecretsManager", 5): 1,
            ("ParameterStore", 10): 2,
            ("ParameterStore", 5): 1,
        }
    )
    assert p.take_due(0) == []  # in flight until completed


def test_groups_never_mix_identities() -> None:
    p = plan()
    wanted = {src(i, identity=("role", str(i % 2))): 60.0 for i in range(4)}
    p.set_owner("a", wanted, 0, run_now=wanted)
    batches = p.take_due(0)
    assert len(batches) == 2
    assert all(len({s.identity for s in b}) == 1 for b in batches)


def test_restart_spreads_first_fetches_over_the_interval() -> None:
    p = plan()
    wanted = {src(i): 100.0 for i in range(50)}
    p.set_owner("a", wanted, 0)  # no run_now: an operator restart
    dues = sorted(p.due(s) or 0 for s in wanted)
    assert dues[0] >= 0 and dues[-1] < 100
    # evenly spread: every tenth of the interval holds some first fetches, none holds a burst
    per_tenth = Counter(int(d // 10) for d in dues)
    assert set(per_tenth) == set(range(10)) and max(per_tenth.values()) <= 8


def simulate(p: Plan, start: float, end: float, step: float = 0.5) -> list[tuple[float, int]]:
    calls: list[tuple[float, int]] = []
    t = start
    while t < end:
        batches = p.take_due(t)
        calls.extend((t, len(b)) for b in batches)
        complete_all(p, batches, t)
        t += step
    return calls


def test_steady_state_costs_ceil_m_over_batch_per_interval() -> None:
    for m in (10, 25, 100, 45):
        p = plan()
        wanted = {src(i): 60.0 for i in range(m)}
        p.set_owner("a", wanted, 0)
        simulate(p, 0, 120)  # warm up two intervals
        calls = simulate(p, 120, 180)
        assert len(calls) == math.ceil(m / 20), (m, calls)


def test_mass_creation_does_not_repeat_as_a_burst() -> None:
    p = plan()
    wanted = {src(i): 60.0 for i in range(200)}
    p.set_owner("a", wanted, 0, run_now=wanted)
    first = simulate(p, 0, 1)
    assert len(first) == 10  # everything at once on creation
    later = simulate(p, 1, 241)
    seconds = Counter(int(t) for t, _ in later if t >= 61)
    assert max(seconds.values()) <= 2  # spread out, not 10 calls in one second every minute
    # and no value gets older than the interval
    assert len([c for c in later if 61 <= c[0] < 121]) >= 10


def test_every_source_refreshed_within_its_interval() -> None:
    p = plan()
    wanted = {src(i): 30.0 for i in range(37)}
    p.set_owner("a", wanted, 0, run_now=wanted)
    last: dict[Source, float] = {}
    t = 0.0
    while t < 200:
        for batch in p.take_due(t):
            for s in batch:
                if s in last:
                    assert t - last[s] <= 30.0 + 0.5
                last[s] = t
                p.complete(s, True, t)
        t += 0.5
    assert len(last) == 37


def test_interval_is_min_over_owners_and_follows_owner_removal() -> None:
    p = plan()
    s = src(1)
    p.set_owner("slow", {s: 3600.0}, 0)
    p.set_owner("fast", {s: 60.0}, 0)
    assert p.interval(s) == 60 and (p.due(s) or 0) <= 60
    p.remove_owner("fast")
    assert p.interval(s) == 3600
    p.remove_owner("slow")
    assert p.sources() == []


def test_fetch_once_for_interval_zero_and_pinned_versions() -> None:
    p = plan()
    once, pinned = src(1), src(2, version="pinned")
    p.set_owner("a", {once: 0.0, pinned: 60.0}, 0, run_now=[once, pinned])
    batches = p.take_due(0)
    complete_all(p, batches, 0)
    assert p.due(once) is None and p.due(pinned) is None and p.next_wake() is None
    assert simulate(p, 0, 500) == []
    p.run_now(pinned, 500)  # an explicit refresh request still fetches
    assert p.take_due(500) == [[pinned]]


def test_failures_back_off_exponentially_with_a_cap() -> None:
    p = plan()
    bad = src(1)
    p.set_owner("a", {bad: 600.0}, 0, run_now=[bad])
    t = 0.0
    delays = []
    for _ in range(8):
        assert p.take_due(t) == [[bad]]
        p.complete(bad, False, t)
        due = p.due(bad)
        assert due is not None
        delays.append(due - t)
        assert p.take_due(due - 0.1) == []  # not before its backoff is over
        t = due
    assert delays[:4] == [5, 10, 20, 40]
    assert max(delays) == 300  # capped
    p.take_due(t)
    p.complete(bad, True, t)
    assert p.due(bad) == t + 600  # success returns to the normal interval


def test_backing_off_keys_stay_out_of_other_batches() -> None:
    p = plan()
    bad, other = src(1), src(2)
    p.set_owner("a", {bad: 600.0, other: 600.0}, 0, run_now=[bad])
    (batch,) = p.take_due(0)
    assert batch == [bad, other]  # the other key rides along: it is not failing
    p.complete(bad, False, 0)  # retry at 5
    p.complete(other, True, 0)
    p.run_now(other, 1)
    assert p.take_due(1) == [[other]]


def test_run_now_while_in_flight_reruns_after_completion() -> None:
    p = plan()
    s = src(1)
    p.set_owner("a", {s: 600.0}, 0, run_now=[s])
    assert p.take_due(0) == [[s]]
    p.run_now(s, 1)
    assert p.take_due(1) == []
    p.complete(s, True, 2)
    assert p.take_due(2) == [[s]]


def test_backoff_jitter_and_cap() -> None:
    b = Backoff(base=5, cap=300, random=lambda: 0.0)
    assert b.delay(1) == 2.5  # half of 5 with the lowest jitter
    assert Backoff(base=5, cap=300, random=lambda: 1.0).delay(10) == 300  # past any interval, to the cap
    assert Backoff().cap == 600  # ten minutes by default
