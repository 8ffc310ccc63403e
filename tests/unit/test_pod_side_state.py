"""The state behind the pod side: mount settings in the index, its completeness, which workload
templates ask for an ExternalSecret, and the refresh loop's liveness."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tests.unit.test_plan import plan, src
from tmpfs_secrets.kube.index import ObjectIndex, Target
from tmpfs_secrets.kube.restarts import asks_for, marker_key
from tmpfs_secrets.providers.base import Source
from tmpfs_secrets.scheduler import Scheduler


def test_targets_carry_mount_and_rotation_with_the_crd_defaults() -> None:
    default = Target.from_spec({}, "shop-db")
    assert (default.mount_path, default.default_mode, default.restart_workloads) == (
        "/var/run/secrets/tmpfs-secrets.io/shop-db",
        0o440,
        False,
    )
    given = Target.from_spec(
        {"mount": {"path": "/s", "defaultMode": 256}, "rotation": {"restartWorkloads": True}}, "x"
    )
    assert (given.mount_path, given.default_mode, given.restart_workloads) == ("/s", 256, True)


def body(kind: str, name: str, rv: str = "1") -> dict[str, object]:
    return {"kind": kind, "metadata": {"namespace": "ns", "name": name, "uid": name, "resourceVersion": rv}}


def test_the_index_is_complete_once_the_watch_delivered_what_the_list_found() -> None:
    index = ObjectIndex()
    assert not index.complete
    index.observe("ExternalSecret", body("ExternalSecret", "a"))
    index.await_listed(
        [("ExternalSecret", "ns", "a"), ("ExternalSecret", "ns", "b"), ("SecretStore", "ns", "s")]
    )
    assert not index.complete
    index.observe("ExternalSecret", body("ExternalSecret", "b"))
    assert not index.complete
    index.forget("SecretStore", "ns", "s")  # deleted before the watch delivered it
    assert index.complete


def test_templates_ask_by_annotation_or_by_a_volume_of_the_target() -> None:
    annotated: Mapping[str, object] = {
        "metadata": {"annotations": {"tmpfs-secrets.io/secrets": "a, shop-db"}}
    }
    assert asks_for(annotated, "shop-db", "shop-db")
    assert not asks_for(annotated, "shop", "shop")
    by_volume = {"spec": {"volumes": [{"name": "v", "secret": {"secretName": "target"}}]}}
    assert asks_for(by_volume, "shop-db", "target")
    assert not asks_for({}, "shop-db", "shop-db")
    assert len(marker_key("x" * 253).split("/")[1]) <= 63


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_liveness_problem_when_the_loop_is_stopped_or_stuck() -> None:
    clock = Clock()
    p = plan()
    sources = {src(1): 60.0}
    p.set_owner("a", sources, 0, run_now=sources)
    fetched: list[Source] = []

    async def run_batch(batch: list[Source]) -> Mapping[Source, bool]:
        fetched.extend(batch)
        return dict.fromkeys(batch, True)

    scheduler = Scheduler(p, clock, run_batch)
    assert scheduler.problem(clock.now(), 60) == "the refresh loop is not running"
    scheduler.start()
    for _ in range(50):
        await asyncio.sleep(0)
    await scheduler.idle()
    assert fetched == [src(1)]
    assert scheduler.problem(clock.now(), 60) is None
    # Time passes beyond the next due time plus the margin, and the loop has not looked: stuck.
    due = p.next_wake()
    assert due is not None
    clock.t = due + 61
    assert "stuck" in (scheduler.problem(clock.now(), 60) or "")
    assert scheduler.problem(due + 30, 60) is None
    await scheduler.stop()
    assert scheduler.problem(clock.now(), 60) == "the refresh loop is not running"
