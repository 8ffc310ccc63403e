"""The plan under a fake clock: calls stay evenly spread and at the lower bound whatever happened
before (a mass creation, a restart in any order, an outage), and failures slow a group down."""

from __future__ import annotations

import collections
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping

from tmpfs_secrets.providers.base import GET, Source
from tmpfs_secrets.scheduler import CALL, KEY, THROTTLED, Backoff, Outcome, Plan

ID = ("default",)
Fate = Callable[[float, list[Source]], Mapping[Source, bool | Outcome]]


def src(i: int, identity: tuple[str, ...] = ID) -> Source:
    return Source(identity, "SecretsManager", "us-east-1", GET, f"k{i:05d}")


def plan(seed: int = 1) -> Plan:
    rng = random.Random(seed)
    return Plan(lambda s: 20, lambda s: False, Backoff(base=5, cap=600, random=rng.random), coalesce=0.1)


def healthy(_t: float, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
    return dict.fromkeys(batch, True)


class Sim:
    """Runs the plan from wake-up to wake-up, with creations and other events at their times."""

    def __init__(self, p: Plan) -> None:
        self.p = p
        self.now = 0.0
        self.calls: list[tuple[float, list[Source]]] = []
        self.fetched: dict[Source, list[float]] = collections.defaultdict(list)

    def run(
        self, until: float, fate: Fate = healthy, events: Iterable[tuple[float, Callable[[], None]]] = ()
    ) -> None:
        pending = sorted(events, key=lambda e: e[0])
        while True:
            wake = self.p.next_wake()
            at_event = pending[0][0] if pending else math.inf
            t = min(wake if wake is not None else math.inf, at_event)
            if t >= until:
                self.now = until
                return
            self.now = max(self.now, t)
            while pending and pending[0][0] <= self.now:
                pending.pop(0)[1]()
            for batch in self.p.take_due(self.now):
                self.calls.append((self.now, batch))
                for s in batch:
                    self.fetched[s].append(self.now)
                self.p.complete_batch(batch, fate(self.now, batch), self.now)

    def between(self, start: float, end: float) -> list[tuple[float, list[Source]]]:
        return [c for c in self.calls if start <= c[0] < end]


def most_in_one_second(calls: list[tuple[float, list[Source]]]) -> int:
    return max(collections.Counter(math.floor(t) for t, _ in calls).values(), default=0)


def test_after_a_mass_creation_calls_are_even_and_at_the_lower_bound() -> None:
    p = plan()
    sim = Sim(p)
    wanted = [src(i) for i in range(1000)]
    # 1,000 ExternalSecrets over 1,000 keys, created at 100 a second
    creations = [
        (i / 100, lambda s=s, i=i: p.set_owner(f"es{i}", {s: 60.0}, i / 100, run_now=[s]))
        for i, s in enumerate(wanted)
    ]
    sim.run(400, events=creations)
    for start in (70, 130, 190, 250, 310):
        window = sim.between(start, start + 60)
        assert len(window) == 50, start  # ceil(1000 / 20), every interval
        assert most_in_one_second(window) <= 1  # 50 calls a minute: one every 1.2 s
    # no value is ever older than its interval
    for s in wanted:
        times = sim.fetched[s]
        assert all(b - a <= 60 + 1e-6 for a, b in itertools.pairwise(times)), s


def test_a_restart_in_any_order_of_watch_events_is_spread() -> None:
    for seed in range(3):
        p = plan(seed)
        sim = Sim(p)
        order = [src(i) for i in range(1000)]
        random.Random(seed).shuffle(order)
        # the restarted operator sees the objects over 5 s, stores later than some objects
        events = [
            (5 * i / 1000, lambda s=s, i=i, p=p: p.set_owner(f"es{i}", {s: 60.0}, 5 * i / 1000))
            for i, s in enumerate(order)
        ]
        sim.run(250, events=events)
        first = sim.between(0, 60)
        assert len(first) <= 51  # the first batch went out before most objects were known
        assert most_in_one_second(first) <= 2
        for start in (60, 120, 180):
            window = sim.between(start, start + 60)
            assert len(window) == 50 and most_in_one_second(window) <= 2, (seed, start)


def test_after_an_outage_the_spread_holds_and_probes_back_off() -> None:
    p = plan()
    sim = Sim(p)
    wanted = {src(i): 60.0 for i in range(1000)}
    p.set_owner("es", wanted, 0)
    sim.run(120)

    def down(t: float, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
        if 120 <= t < 300:
            return dict.fromkeys(batch, Outcome(False, CALL))
        return dict.fromkeys(batch, True)

    sim.run(600, down)
    during = [len(sim.between(s, s + 60)) for s in (120, 180, 240)]
    assert during[0] <= 8 and during[1] <= 3 and during[2] <= 2  # 5 s, 10 s, 20 s, ... between probes
    assert all(len(b) == 20 for _, b in sim.between(120, 300))  # probes are whole batches
    for start in (360, 420, 480):
        window = sim.between(start, start + 60)
        assert len(window) == 50 and most_in_one_second(window) <= 1, start


def test_throttling_slows_the_whole_group_below_the_healthy_rate() -> None:
    p = plan()
    sim = Sim(p)
    keys = {src(i): 60.0 for i in range(40)}  # two calls a minute while healthy
    p.set_owner("es", keys, 0, run_now=keys)
    sim.run(120)
    assert len(sim.between(60, 120)) == 2

    def throttled(t: float, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
        if 120 <= t < 300:
            # botocore retried once: two HTTP attempts per call
            return dict.fromkeys(batch, Outcome(False, THROTTLED, attempts=2))
        return dict.fromkeys(batch, True)

    sim.run(600, throttled)
    for start in (120, 180, 240):
        window = sim.between(start, start + 60)
        assert 2 * len(window) <= 2, start  # HTTP attempts a minute: never above the healthy two
        assert all(len(b) == 20 for _, b in window)  # no single-id retries
    # back to the healthy rate, every key refreshed again within two intervals of the end
    assert all(len(sim.between(s, s + 60)) == 2 for s in (420, 480, 540))
    assert all(max(sim.fetched[s]) >= 420 for s in keys)


def test_throttling_honours_the_sdk_retry_hint() -> None:
    p = plan()
    sim = Sim(p)
    keys = {src(i): 60.0 for i in range(20)}
    p.set_owner("es", keys, 0, run_now=keys)
    sim.run(1)
    hint = Outcome(False, THROTTLED, retry_after=400.0)
    sim.run(2000, lambda t, b: dict.fromkeys(b, hint if t < 100 else True))
    throttled = [t for t, _ in sim.calls if 0 < t < 100]
    after = [t for t, _ in sim.calls if t >= 100]
    assert len(throttled) == 1 and after[0] >= throttled[0] + 400


def test_a_failing_key_keeps_its_place_in_batches_and_backs_off_past_its_interval() -> None:
    p = plan()
    sim = Sim(p)
    keys = {src(i): 60.0 for i in range(40)}
    bad = src(7)
    p.set_owner("es", keys, 0, run_now=keys)

    def fate(_t: float, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
        return {s: Outcome(False, KEY) if s == bad else True for s in batch}

    sim.run(3600, fate)
    tries = sim.fetched[bad]
    assert all(len(b) >= 2 for _, b in sim.calls if bad in b)  # never alone
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert max(gaps) > 60 and max(gaps) <= 600 + 60  # past the interval, up to the cap (+ one cadence step)
    # the healthy keys do not pay for it: calls stay near two a minute
    assert len(sim.between(600, 3600)) <= 2 * 50 + len([t for t in tries if t >= 600])


def test_every_source_refreshed_within_its_interval_with_mixed_intervals() -> None:
    p = plan()
    sim = Sim(p)
    mixed = {src(i): (30.0 if i % 3 == 0 else 90.0 if i % 3 == 1 else 3600.0) for i in range(95)}
    for i, (s, interval) in enumerate(mixed.items()):
        p.set_owner(f"es{i}", {s: interval}, 0)
    sim.run(7200)
    for s, interval in mixed.items():
        times = [0.0, *sim.fetched[s]]
        assert all(b - a <= interval + 1e-6 for a, b in itertools.pairwise(times)), s
    # cadence from the weighted count: ceil((32 + 32/3 + 31/120) / 20) = 3 calls per 30 s
    assert len(sim.between(3600, 7200)) == 3 * 120


def test_sdk_retries_inside_successful_calls_count_against_the_rate() -> None:
    p = plan()
    sim = Sim(p)
    keys = {src(i): 60.0 for i in range(40)}
    p.set_owner("es", keys, 0, run_now=keys)
    sim.run(120)
    # every call now needs a second HTTP attempt (a throttled first try, retried by botocore)
    sim.run(420, lambda t, b: dict.fromkeys(b, Outcome(True, attempts=2)))
    for start in (180, 240, 300):
        assert (
            2 * len(sim.between(start, start + 60)) <= 2 + 1
        )  # HTTP requests: the healthy two, one in flight
