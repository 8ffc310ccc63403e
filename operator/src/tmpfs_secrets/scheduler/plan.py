"""The scheduling state: which sources are fetched when, and how they are packed into batches.

Sources, not objects, are scheduled. Each source (one remote value as seen by one identity) is
due every min(refreshInterval) of the owners (ExternalSecrets) using it. Sources of one group
(identity, service, region, kind) share calls of up to `batch_size` ids.

Cadence: a group whose sources refresh periodically is fetched at an even pace, one batch every
`gap` seconds, where `gap` is the shortest interval in the group divided by the number of calls
one such interval needs (ceil(M / batch size) when every source has the same interval). Each
batch takes the sources due soonest (earliest deadline first), so a group is a round robin that
refreshes every source within its interval at the lower bound of calls, and the calls stay
evenly spread whatever happened before: a mass creation, a restart whose watch events came in
any order, an outage. Due times only decide the order, the pace is the group's.

Urgent fetches (a new or changed ExternalSecret, a refresh request) go out at once, unless a
batch of their group went out less than `coalesce` seconds ago; then they wait for the end of
that window with the others arriving meanwhile, so N creations over M shared sources cost about
ceil(M / batch size) calls plus one per window, while a lone creation is not delayed.

Failures: a key that fails on its own (missing, denied) backs off exponentially with jitter, past
its interval up to the cap, and is then retried in a batch of its group, never on its own while
others are due. A call that fails as a whole (throttling, AWS unreachable) backs off the whole
group together: no batch of that group goes out until its backoff is over. A throttled group
waits at least one cadence step per attempt the SDK made (and at least the SDK's retry-after
hint; all of it bounded by the backoff cap), so the call rate while throttled never exceeds the
healthy rate; the overdue sources then come back at the cadence, not as a burst.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from tmpfs_secrets.providers.base import Source
from tmpfs_secrets.scheduler.backoff import Backoff

Group = tuple[object, ...]
Owner = Hashable
_GOLDEN = (math.sqrt(5) - 1) / 2
_Entry = tuple[float, int, int, Source]  # (due, ticket, gen, source)

KEY = "key"  # this key failed on its own (not found, access denied for it, bad value)
CALL = "call"  # the call failed as a whole (AWS unreachable, a 5xx): the group backs off
THROTTLED = "throttled"  # AWS throttled the call: the group backs off and slows down


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one source's fetch ended, as far as scheduling is concerned."""

    ok: bool
    scope: str = KEY  # KEY | CALL | THROTTLED, for failures
    retry_after: float | None = None  # the SDK's retry hint, in seconds
    attempts: int = 1  # HTTP attempts the SDK made for the call


OK = Outcome(True)
FAILED = Outcome(False)


@dataclass(slots=True)
class _State:
    group: Group
    pinned: bool
    owners: dict[Owner, float] = field(default_factory=dict)
    interval: float = 0.0  # 0: fetch once
    tracked: float = 0.0  # the interval counted in the group's cadence (0: none)
    due: float = math.inf
    gen: int = 0
    failures: int = 0  # consecutive failures of this key on its own
    in_flight: bool = False
    rerun: bool = False
    urgent: bool = False
    done: bool = False


@dataclass(slots=True)
class _Group:
    size: int
    members: int = 0
    hot: list[_Entry] = field(default_factory=list)  # healthy (and urgent) sources by due time
    retry: list[_Entry] = field(default_factory=list)  # sources backing off on their own
    urgent: dict[Source, None] = field(default_factory=dict)  # ordered set
    intervals: collections.Counter[float] = field(default_factory=collections.Counter)
    anchor: float = -math.inf  # when the last cadence batch was due
    last_batch: float = -math.inf
    failures: int = 0  # consecutive whole-call failures
    blocked_until: float = -math.inf

    def gap(self) -> float | None:
        """Seconds between cadence batches; None when no source refreshes periodically."""
        if not self.intervals:
            return None
        shortest = min(self.intervals)
        weight = sum(count * shortest / interval for interval, count in self.intervals.items())
        calls = max(1, math.ceil(weight / self.size - 1e-9))
        return shortest / calls


class Plan:
    def __init__(
        self,
        batch_size: Callable[[Source], int],
        pinned: Callable[[Source], bool],
        backoff: Backoff | None = None,
        once_spread: float = 30.0,
        coalesce: float = 0.0,
    ) -> None:
        """`coalesce`: after a batch of a group goes out, sources of that group run at once
        (`run_now`) wait up to this long, so a burst of creations shares batches."""
        self._batch_size = batch_size
        self._pinned = pinned
        self._backoff = backoff or Backoff()
        self._once_spread = once_spread
        self._coalesce = coalesce
        self._states: dict[Source, _State] = {}
        self._groups: dict[Group, _Group] = {}
        self._ticket = 0  # insertion order breaks ties between equal due times
        self._owners: dict[Owner, dict[Source, float]] = {}
        self._seq = 0

    # --- owners ------------------------------------------------------------------------------

    def set_owner(
        self, owner: Owner, wanted: Mapping[Source, float], now: float, run_now: Iterable[Source] = ()
    ) -> None:
        """Declare the sources `owner` uses with its interval; `run_now` are fetched at once."""
        old = self._owners.get(owner, {})
        self._owners[owner] = dict(wanted)
        for src in old.keys() - wanted.keys():
            self._drop(src, owner)
        for src, interval in wanted.items():
            st = self._states.get(src)
            if st is None:
                group = self._groups.get(src.group)
                if group is None:
                    group = self._groups[src.group] = _Group(max(1, self._batch_size(src)))
                group.members += 1
                st = self._states[src] = _State(src.group, pinned=self._pinned(src))
                st.owners[owner] = interval
                self._retrack(src, st)
                spread = st.interval if st.interval > 0 else self._once_spread
                self._set_due(src, st, now + self._phase() * spread)
                continue
            st.owners[owner] = interval
            self._retrack(src, st)
            if st.in_flight:
                continue
            if st.done and not st.pinned and st.interval > 0:
                st.done = False
                self._set_due(src, st, now + st.interval)
            elif st.interval > 0 and st.due > now + st.interval:
                self._set_due(src, st, now + st.interval)
        for src in run_now:
            self.run_now(src, now)

    def remove_owner(self, owner: Owner) -> None:
        for src in self._owners.pop(owner, {}):
            self._drop(src, owner)

    def run_now(self, src: Source, now: float) -> None:
        st = self._states.get(src)
        if st is None:
            return
        if st.in_flight:
            st.rerun = True
            return
        st.done = False
        st.urgent = True
        self._groups[st.group].urgent[src] = None
        self._set_due(src, st, min(st.due, now))

    # --- the loop's view ---------------------------------------------------------------------

    def next_wake(self) -> float | None:
        times = [t for key in list(self._groups) if (t := self._wake_at(key)) is not None]
        return min(times) if times else None

    def take_due(self, now: float) -> list[list[Source]]:
        """Batches to fetch now; their sources are in flight until `complete`."""
        batches: list[list[Source]] = []
        for key in list(self._groups):
            batches.extend(self._fire(key, now))
        return batches

    def complete(self, src: Source, ok: bool | Outcome, now: float) -> None:
        """One source's result (a batch of one; see `complete_batch`)."""
        self.complete_batch([src], {src: ok}, now)

    def complete_batch(
        self, batch: Iterable[Source], outcomes: Mapping[Source, bool | Outcome], now: float
    ) -> None:
        """The results of one batch: each source's next due time, and the group's backoff."""
        results = {src: _outcome(outcomes.get(src, False)) for src in batch}
        if not results:
            return
        group = self._groups.get(next(iter(results)).group)
        whole_call_failed = False
        if group is not None:
            throttled = [o for o in results.values() if not o.ok and o.scope == THROTTLED]
            call_failed = [o for o in results.values() if not o.ok and o.scope != KEY]
            if throttled or (call_failed and not any(o.ok for o in results.values())):
                whole_call_failed = True
                group.failures += 1
                delay = self._backoff.delay(group.failures)
                if throttled:
                    step = group.gap() or 0.0
                    attempts = max(o.attempts for o in throttled)
                    hint = max((o.retry_after or 0.0) for o in throttled)
                    # Never above the cap: a store that calls once an hour should not wait hours.
                    delay = max(delay, min(self._backoff.cap, max(step * attempts, hint)))
                probe = group.blocked_until == math.inf
                group.blocked_until = now + delay if probe else max(group.blocked_until, now + delay)
            else:
                if any(o.ok for o in results.values()):
                    group.failures = 0
                cadence = group.gap()
                retried = max(o.attempts for o in results.values()) - 1
                if cadence is not None and retried > 0 and group.anchor > -math.inf:
                    group.anchor += retried * cadence  # the SDK's retries were requests too
                if group.blocked_until == math.inf:  # the probe got through
                    group.blocked_until = now
        for src, outcome in results.items():
            self._complete_one(src, outcome, now, group if whole_call_failed else None)

    def _complete_one(self, src: Source, outcome: Outcome, now: float, blocked: _Group | None) -> None:
        st = self._states.get(src)
        if st is None:
            return
        st.in_flight = False
        if outcome.ok:
            st.failures = 0
            if st.rerun:
                due = now
            elif st.pinned or st.interval == 0:
                st.done = True
                due = math.inf
            else:
                due = now + st.interval
        elif blocked is not None and outcome.scope != KEY:
            # The call failed as a whole: the key keeps its place and goes with the group's next
            # batch once the group's backoff is over.
            due = blocked.blocked_until
        else:
            st.failures += 1
            due = now if st.rerun else now + self._backoff.delay(st.failures)
        if st.rerun:
            st.urgent = True
            self._groups[st.group].urgent[src] = None
        st.rerun = False
        self._set_due(src, st, due)

    # --- inspection --------------------------------------------------------------------------

    def due(self, src: Source) -> float | None:
        st = self._states.get(src)
        return None if st is None or st.due == math.inf else st.due

    def pending(self, src: Source, now: float) -> bool:
        """A fetch of `src` is running or due now, so a batch result for it is still to come."""
        st = self._states.get(src)
        return st is not None and (st.in_flight or st.due <= now)

    def in_flight(self, src: Source) -> bool:
        st = self._states.get(src)
        return st is not None and st.in_flight

    def failures(self, src: Source) -> int:
        st = self._states.get(src)
        return st.failures if st else 0

    def interval(self, src: Source) -> float | None:
        st = self._states.get(src)
        return st.interval if st else None

    def sources(self) -> list[Source]:
        return list(self._states)

    def cadence(self, src: Source) -> float | None:
        """Seconds between the cadence batches of the source's group (None: no cadence)."""
        st = self._states.get(src)
        return self._groups[st.group].gap() if st else None

    def blocked_until(self, src: Source) -> float | None:
        """Until when the source's group backs off after whole-call failures (None: it does not)."""
        st = self._states.get(src)
        if st is None:
            return None
        until = self._groups[st.group].blocked_until
        return until if until > -math.inf else None

    # --- internals ---------------------------------------------------------------------------

    def _phase(self) -> float:
        self._seq += 1
        return (self._seq * _GOLDEN) % 1.0

    def _retrack(self, src: Source, st: _State) -> None:
        st.interval = _min_interval(st.owners.values())
        wanted = 0.0 if st.pinned or not st.owners else st.interval
        if wanted == st.tracked:
            return
        intervals = self._groups[st.group].intervals
        if st.tracked:
            intervals[st.tracked] -= 1
            if intervals[st.tracked] <= 0:
                del intervals[st.tracked]
        if wanted:
            intervals[wanted] += 1
        st.tracked = wanted

    def _drop(self, src: Source, owner: Owner) -> None:
        st = self._states.get(src)
        if st is None:
            return
        st.owners.pop(owner, None)
        if st.owners:
            self._retrack(src, st)
            return
        self._retrack(src, st)  # no owner left: out of the group's cadence
        del self._states[src]
        group = self._groups[st.group]
        group.urgent.pop(src, None)
        group.members -= 1
        if group.members <= 0:
            del self._groups[st.group]

    def _set_due(self, src: Source, st: _State, due: float) -> None:
        st.gen += 1
        st.due = due
        self._ticket += 1
        group = self._groups[st.group]
        heap = group.retry if st.failures > 0 and not st.urgent else group.hot
        heapq.heappush(heap, (due, self._ticket, st.gen, src))

    def _valid(self, entry: _Entry) -> bool:
        st = self._states.get(entry[3])
        return st is not None and st.gen == entry[2] and not st.in_flight

    def _top(self, heap: list[_Entry]) -> _Entry | None:
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _urgent(self, group: _Group) -> bool:
        for src in list(group.urgent):
            st = self._states.get(src)
            if st is not None and st.urgent and not st.in_flight:
                return True
            del group.urgent[src]
        return False

    def _wake_at(self, key: Group) -> float | None:
        group = self._groups[key]
        gate = group.last_batch + self._coalesce
        gap = group.gap()
        hot, retry = self._top(group.hot), self._top(group.retry)
        times: list[float] = []
        if self._urgent(group):
            times.append(gate)
        if retry is not None and (group.failures == 0 or gap is None):
            times.append(max(retry[0], gate))
        if gap is not None:
            slot = self._slot(group, gap, hot)
            if hot is not None and hot[0] < math.inf:
                times.append(max(slot, gate))
                if group.failures:  # probe once the group's backoff is over
                    times.append(max(hot[0], gate))
            if retry is not None:
                times.append(max(slot, gate, retry[0]))
        elif hot is not None and hot[0] < math.inf:
            times.append(max(hot[0], gate))
        wake = max(min(times), group.blocked_until) if times else math.inf
        return wake if wake < math.inf else None

    def _fire(self, key: Group, now: float) -> list[list[Source]]:
        group = self._groups[key]
        if now < group.blocked_until:
            return []
        gate = group.last_batch + self._coalesce
        batches: list[list[Source]] = []
        if now >= gate:
            while self._urgent(group) and (batch := self._fill(group, now)):
                batches.append(batch)
            if batches:
                self._fired(group, now)
                return batches
        gap = group.gap()
        hot, retry = self._top(group.hot), self._top(group.retry)
        retry_due = retry is not None and retry[0] <= now
        if retry_due and now >= gate and (group.failures == 0 or gap is None):
            batches.append(self._fill(group, now))
        elif gap is not None:
            slot = self._slot(group, gap, hot)
            probe = group.failures > 0 and hot is not None and hot[0] <= now
            if now >= gate and (
                probe or (now >= slot and ((hot is not None and hot[0] < math.inf) or retry_due))
            ):
                # Keep to the even grid while on time; after a gap in the schedule, start anew.
                group.anchor = slot if 0 <= now - slot < gap / 2 else now
                batches.append(self._fill(group, now))
        elif now >= gate:
            while (hot := self._top(group.hot)) is not None and hot[0] <= now:
                batches.append(self._fill(group, now))
        batches = [b for b in batches if b]
        if batches:
            self._fired(group, now)
        return batches

    @staticmethod
    def _fired(group: _Group, now: float) -> None:
        group.last_batch = now
        if group.anchor == -math.inf:  # the cadence starts with the group's first batch
            group.anchor = now
        if group.failures:  # one probe at a time while the group backs off
            group.blocked_until = math.inf

    @staticmethod
    def _slot(group: _Group, gap: float, hot: _Entry | None) -> float:
        """When the next cadence batch is due. A group that never fetched (an operator restart)
        starts at its earliest due time, which the restart spread over the interval."""
        if group.anchor > -math.inf:
            return group.anchor + gap
        return hot[0] if hot is not None else math.inf

    def _fill(self, group: _Group, now: float) -> list[Source]:
        """One batch: urgent sources first, then keys whose retry is due, then the sources due
        soonest (pulled in early: a round robin, so no call goes out with room to spare)."""
        batch: list[Source] = []
        for src in list(group.urgent):
            if len(batch) >= group.size:
                break
            st = self._states.get(src)
            del group.urgent[src]
            if st is not None and st.urgent and not st.in_flight:
                self._take(src, st, batch)
        while len(batch) < group.size and (entry := self._top(group.retry)) is not None and entry[0] <= now:
            heapq.heappop(group.retry)
            self._take(entry[3], self._states[entry[3]], batch)
        while len(batch) < group.size and (entry := self._top(group.hot)) is not None and entry[0] < math.inf:
            heapq.heappop(group.hot)
            self._take(entry[3], self._states[entry[3]], batch)
        return batch

    @staticmethod
    def _take(src: Source, st: _State, batch: list[Source]) -> None:
        st.in_flight = True
        st.urgent = False
        st.gen += 1
        batch.append(src)


def _outcome(value: bool | Outcome) -> Outcome:
    if isinstance(value, Outcome):
        return value
    return OK if value else FAILED


def _min_interval(intervals: Iterable[float]) -> float:
    positive = [i for i in intervals if i > 0]
    return min(positive) if positive else 0.0
