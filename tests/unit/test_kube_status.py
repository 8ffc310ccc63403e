"""Status computation of the Kubernetes side: what is written, and that nothing is when nothing changed."""

from __future__ import annotations

from tmpfs_secrets.kube import conditions, status
from tmpfs_secrets.kube.index import ObjectIndex, Target, Tracked
from tmpfs_secrets.ports import SyncFailure, SyncSuccess

T0 = 1_800_000_000.0


def _es(status_: dict[str, object] | None = None, generation: int = 1) -> Tracked:
    return Tracked(
        "ExternalSecret", "shop", "db", "uid-1", generation, "10", dict(status_ or {}), Target("db")
    )


def _ok(hash_: str = "sha256:aa", versions: dict[str, str] | None = None, at: float = T0) -> SyncSuccess:
    return SyncSuccess(
        data={"A": b"1", "B": b"2"},
        versions=versions or {"A": "v1", "B": "v1"},
        content_hash=hash_,
        sources=2,
        refresh_time=at,
        next_refresh_time=at + 60,
    )


def test_first_sync_writes_everything() -> None:
    desired = status.synced_status(_es(), _ok(), now=T0)
    patch = status.status_patch({}, desired)
    assert patch is not None
    ready = patch["conditions"][0]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Synced",
        "message": "2 keys from 2 sources",
        "observedGeneration": 1,
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }
    assert patch["contentHash"] == "sha256:aa"
    assert patch["syncedVersions"] == {"A": "v1", "B": "v1"}
    assert patch["refreshTime"] == "2027-01-15T08:00:00Z"
    assert patch["nextRefreshTime"] == "2027-01-15T08:01:00Z"


def test_an_idle_refresh_writes_nothing_although_the_times_moved() -> None:
    current = status.synced_status(_es(), _ok(), now=T0)
    later = status.synced_status(_es(current), _ok(at=T0 + 600), now=T0 + 600)
    assert later["refreshTime"] != current["refreshTime"]
    assert status.status_patch(current, later) is None


def test_a_new_generation_or_content_is_written_and_keeps_the_transition_time() -> None:
    current = status.synced_status(_es(), _ok(), now=T0)
    newer = status.synced_status(_es(current, generation=2), _ok(), now=T0 + 5)
    patch = status.status_patch(current, newer)
    assert patch is not None and patch["conditions"][0]["observedGeneration"] == 2
    assert patch["conditions"][0]["lastTransitionTime"] == current["conditions"][0]["lastTransitionTime"]
    rotated = status.synced_status(_es(current), _ok("sha256:bb", {"A": "v2"}), now=T0 + 5)
    patch = status.status_patch(current, rotated)
    assert patch is not None
    assert patch["contentHash"] == "sha256:bb"
    assert patch["syncedVersions"] == {"A": "v2", "B": None}  # a merge patch must remove B explicitly


def test_a_failure_keeps_the_last_good_content_and_flips_the_transition_time() -> None:
    current = status.synced_status(_es(), _ok(), now=T0)
    failed = status.failed_status(_es(current), SyncFailure("Throttled", "AWS throttled"), now=T0 + 30)
    assert "contentHash" not in failed and "syncedVersions" not in failed and "refreshTime" not in failed
    patch = status.status_patch(current, failed)
    assert patch is not None
    cond = patch["conditions"][0]
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Throttled", "AWS throttled")
    assert cond["lastTransitionTime"] == conditions.rfc3339(T0 + 30)
    merged = {**current, **patch}
    again = status.failed_status(_es(merged), SyncFailure("Throttled", "AWS throttled"), now=T0 + 90)
    assert status.status_patch(merged, again) is None


def test_other_condition_types_are_kept() -> None:
    others = [{"type": "Delivered", "status": "True"}]
    conds = conditions.with_condition(
        others, type_="Ready", status=True, reason="Synced", message="m", observed_generation=1, now=T0
    )
    assert [c["type"] for c in conds] == ["Ready", "Delivered"]


def test_the_index_ignores_older_resource_versions() -> None:
    index = ObjectIndex()
    body = {
        "metadata": {"namespace": "shop", "name": "db", "uid": "u", "generation": 2, "resourceVersion": "20"},
        "spec": {"target": {"name": "other", "creationPolicy": "Merge"}},
        "status": {"contentHash": "sha256:new"},
    }
    index.observe("ExternalSecret", body)
    stale = {
        **body,
        "metadata": {**body["metadata"], "resourceVersion": "19"},
        "status": {"contentHash": "old"},
    }
    tracked = index.observe("ExternalSecret", stale)
    assert tracked.status == {"contentHash": "sha256:new"}
    assert tracked.target == Target(
        "other", creation_policy="Merge", mount_path="/var/run/secrets/tmpfs-secrets.io/db"
    )
    index.observe_status(
        "ExternalSecret",
        {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": "21"},
            "status": {"contentHash": "sha256:newer"},
        },
    )
    assert index.get("ExternalSecret", "shop", "db").status == {"contentHash": "sha256:newer"}  # type: ignore[union-attr]
