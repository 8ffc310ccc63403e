"""The scheduling state: which sources are due when, and how they are packed into batches.

Sources, not objects, are scheduled. Each source (one remote value as seen by one identity) is
due every min(refreshInterval) of the owners (ExternalSecrets) using it. When a source is due, it
goes out in a batch with the other sources of its group (identity, service, region) that are due
soonest, up to the batch size. A source pulled in early is simply refreshed early, so a group of
M sources costs ceil(M / batch size) calls per interval.

Spreading: sources seen first without an urgent reason (an operator restart) get due times
spread over their interval with a golden-ratio sequence, which is even for any number of
sources. Sources run at once (a new or changed ExternalSecret, a refresh request) are spread
over the second half of the next interval after that run, so a mass creation does not become a
burst repeated every interval. Failing sources back off exponentially with jitter, and are not
pulled into other batches early.

Coalescing: a source run at once goes out immediately, unless a batch of its group went out less
than `coalesce` seconds ago; then it waits for the end of that window with the others arriving
meanwhile, so N creations over M shared sources cost about ceil(M / batch size) calls plus one per
window, while a lone creation is not delayed.
"""

from __future__ import annotations

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


@dataclass
class _State:
    pinned: bool
    owners: dict[Owner, float] = field(default_factory=dict)
    interval: float = 0.0  # 0: fetch once
    due: float = math.inf
    gen: int = 0
    failures: int = 0
    in_flight: bool = False
    rerun: bool = False
    out_of_phase: bool = False
    done: bool = False


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
        self._gates: dict[Group, float] = {}  # group -> earliest time for the next run_now batch
        self._states: dict[Source, _State] = {}
        self._heaps: dict[Group, list[_Entry]] = {}
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
                st = self._states[src] = _State(pinned=self._pinned(src))
                st.owners[owner] = interval
                st.interval = _min_interval(st.owners.values())
                spread = st.interval if st.interval > 0 else self._once_spread
                self._set_due(src, st, now + self._phase() * spread)
                continue
            st.owners[owner] = interval
            st.interval = _min_interval(st.owners.values())
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
        st.out_of_phase = True
        due = max(now, self._gates.get(src.group, now))
        if st.due > due:
            self._set_due(src, st, due)

    # --- the loop's view ---------------------------------------------------------------------

    def next_wake(self) -> float | None:
        tops = [top[0] for group in list(self._heaps) if (top := self._top(group)) is not None]
        finite = [t for t in tops if t < math.inf]
        return min(finite) if finite else None

    def take_due(self, now: float) -> list[list[Source]]:
        """Batches to fetch now; their sources are in flight until `complete`."""
        batches: list[list[Source]] = []
        for group in list(self._heaps):
            while (top := self._top(group)) is not None and top[0] <= now:
                batch = self._fill(group, now, self._batch_size(top[3]))
                for src in batch:
                    st = self._states[src]
                    st.in_flight = True
                    st.gen += 1
                batches.append(batch)
                if self._coalesce > 0:
                    self._gates[group] = now + self._coalesce
        return batches

    def complete(self, src: Source, ok: bool, now: float) -> None:
        st = self._states.get(src)
        if st is None:
            return
        st.in_flight = False
        if ok:
            st.failures = 0
            if st.rerun:
                due = now
            elif st.pinned or st.interval == 0:
                st.done = True
                due = math.inf
            elif st.out_of_phase:
                due = now + st.interval * (1 - 0.5 * self._phase())
            else:
                due = now + st.interval
        else:
            st.failures += 1
            due = now if st.rerun else now + self._backoff.delay(st.failures, st.interval)
        st.out_of_phase = st.rerun
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

    # --- internals ---------------------------------------------------------------------------

    def _phase(self) -> float:
        self._seq += 1
        return (self._seq * _GOLDEN) % 1.0

    def _drop(self, src: Source, owner: Owner) -> None:
        st = self._states.get(src)
        if st is None:
            return
        st.owners.pop(owner, None)
        if not st.owners:
            del self._states[src]
        else:
            st.interval = _min_interval(st.owners.values())

    def _set_due(self, src: Source, st: _State, due: float) -> None:
        st.gen += 1
        st.due = due
        self._ticket += 1
        heapq.heappush(self._heaps.setdefault(src.group, []), (due, self._ticket, st.gen, src))

    def _valid(self, entry: _Entry) -> bool:
        st = self._states.get(entry[3])
        return st is not None and st.gen == entry[2] and not st.in_flight

    def _top(self, group: Group) -> _Entry | None:
        heap = self._heaps[group]
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        if not heap:
            del self._heaps[group]
            return None
        return heap[0]

    def _fill(self, group: Group, now: float, size: int) -> list[Source]:
        heap = self._heaps[group]
        batch: list[Source] = []
        aside: list[_Entry] = []
        while heap and len(batch) < size:
            entry = heapq.heappop(heap)
            if not self._valid(entry):
                continue
            due, _, _, src = entry
            if due == math.inf:
                aside.append(entry)
                break
            if due <= now or self._states[src].failures == 0:
                batch.append(src)
            else:  # backing off: only its own due time may bring it back
                aside.append(entry)
        for entry in aside:
            heapq.heappush(heap, entry)
        return batch


def _min_interval(intervals: Iterable[float]) -> float:
    positive = [i for i in intervals if i > 0]
    return min(positive) if positive else 0.0
