"""Leader election on a `coordination.k8s.io` Lease, the way client-go's leaderelection does it.

Several replicas may run; only the holder of the Lease refreshes values and writes to Kubernetes.
The others keep their watches (and the index the webhook answers from) warm, and take the Lease
over when its holder stops renewing it. Whether a Lease expired is judged with this replica's own
monotonic clock from the moment it last saw the record change (client-go's "observed time"), so
the clocks of different nodes never need to agree. A holder that can't renew within
`renew_deadline` steps down (the operator then exits and starts again as a follower); one that
stops cleanly releases the Lease, so another replica takes over at its next retry instead of
after the lease duration. Updates carry the resourceVersion read, so two replicas can never both
win the same Lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tmpfs_secrets.kube.rest import KubeApiError, Rest, group_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0  # how long a Lease holds without renewal
    renew_deadline: float = 10.0  # the holder steps down when it could not renew for this long
    retry_period: float = 2.0  # how often to try to acquire or renew

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and keeps the Lease; `run()` returns when leadership was lost (never if kept)."""

    def __init__(
        self,
        rest: Rest,
        config: LeaseConfig,
        on_started: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = rest
        self.config = config
        self.on_started = on_started
        self.leading = False
        self.transitions = 0  # times this replica became the leader
        self._clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    @property
    def path(self) -> str:
        return group_path("coordination.k8s.io", "v1", "leases", self.config.namespace, self.config.name)

    async def run(self) -> None:
        cfg = self.config
        log.info("waiting to lead: Lease %s/%s as %s", cfg.namespace, cfg.name, cfg.identity)
        while True:
            if await self._try():
                break
            await asyncio.sleep(cfg.retry_period)
        self.leading = True
        self.transitions += 1
        log.info("leading: acquired Lease %s/%s", cfg.namespace, cfg.name)
        await self.on_started()
        renewed = self._clock()
        while True:
            await asyncio.sleep(cfg.retry_period)
            if await self._try():
                renewed = self._clock()
            elif self._clock() - renewed > cfg.renew_deadline:
                self.leading = False
                log.error(
                    "lost Lease %s/%s (not renewed for %.0fs): stepping down",
                    cfg.namespace,
                    cfg.name,
                    cfg.renew_deadline,
                )
                return

    async def release(self) -> None:
        """Give the Lease up (on a clean stop), so another replica need not wait for it to expire."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.rest.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.config.identity:
                return
            spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_micro_time(datetime.now(UTC)))
            await self.rest.request("PUT", self.path, body={**lease, "spec": spec})
            log.info("released Lease %s/%s", self.config.namespace, self.config.name)
        except KubeApiError as e:
            log.warning("could not release Lease %s/%s: %s", self.config.namespace, self.config.name, e)

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when this replica holds the Lease afterwards."""
        cfg = self.config
        now = datetime.now(UTC)
        try:
            lease = await self.rest.get(self.path)
        except KubeApiError as e:
            if not e.not_found:
                log.warning("could not read Lease %s/%s: %s", cfg.namespace, cfg.name, e)
                return False
            return await self._create(now)
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and self._clock() < self._observed_at + duration:
            return False  # held by another replica, which renewed it recently enough
        if holder != cfg.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        spec.update(
            holderIdentity=cfg.identity,
            leaseDurationSeconds=int(cfg.lease_duration),
            renewTime=_micro_time(now),
        )
        try:
            updated = await self.rest.request("PUT", self.path, body={**lease, "spec": spec})
        except KubeApiError as e:
            if not e.conflict:
                log.warning("could not update Lease %s/%s: %s", cfg.namespace, cfg.name, e)
            return False  # another replica wrote it first
        self._remember(updated)
        return True

    async def _create(self, now: datetime) -> bool:
        cfg = self.config
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": int(cfg.lease_duration),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.rest.post(
                group_path("coordination.k8s.io", "v1", "leases", cfg.namespace), body
            )
        except KubeApiError as e:
            if not e.conflict:
                log.warning("could not create Lease %s/%s: %s", cfg.namespace, cfg.name, e)
            return False
        self._remember(created)
        return True

    def _remember(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        self._observed = (
            spec.get("holderIdentity") or "",
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
        )
        self._observed_at = self._clock()
