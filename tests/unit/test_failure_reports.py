"""What a steady failure writes: no status patch per retry, one SyncFailed event per reason and window."""

from __future__ import annotations

from tmpfs_secrets.kube import status
from tmpfs_secrets.kube.events import FailureLimiter
from tmpfs_secrets.kube.index import Target, Tracked
from tmpfs_secrets.ports import SyncFailure

T0 = 1_800_000_000.0
KEY = ("ExternalSecret", "shop", "db")
MESSAGE = "AWS failed reading secret app/db (InternalFailure); retrying with backoff"


def _es(status_: dict[str, object] | None = None) -> Tracked:
    return Tracked("ExternalSecret", "shop", "db", "uid-1", 1, "10", dict(status_ or {}), Target("db"))


def test_a_repeated_failure_with_a_new_next_refresh_time_patches_nothing() -> None:
    first = status.failed_status(_es(), SyncFailure("ProviderError", MESSAGE, T0 + 5), now=T0)
    written = _es(first)
    for retry, delay in enumerate((10.0, 20.0, 40.0), start=1):
        again = status.failed_status(
            written, SyncFailure("ProviderError", MESSAGE, T0 + retry * 100 + delay), now=T0 + retry * 100
        )
        assert again["nextRefreshTime"] != first["nextRefreshTime"]
        assert status.status_patch(written.status, again) is None


def test_a_changed_failure_message_is_written() -> None:
    written = _es(status.failed_status(_es(), SyncFailure("ProviderError", MESSAGE, T0 + 5), now=T0))
    other = "AWS denied reading secret app/db (AccessDenied); check the IAM policy"
    desired = status.failed_status(written, SyncFailure("AccessDenied", other, T0 + 10), now=T0 + 5)
    patch = status.status_patch(written.status, desired)
    assert patch is not None
    assert patch["conditions"][0]["message"] == other


def test_sync_failed_is_limited_per_object_and_reason_within_the_window() -> None:
    limiter = FailureLimiter(300.0)
    assert limiter.allow(KEY, "ProviderError", T0)
    assert not limiter.allow(KEY, "ProviderError", T0 + 5)
    # a flapping reason posts each reason once per window, not once per flip
    assert limiter.allow(KEY, "Throttled", T0 + 10)
    assert not limiter.allow(KEY, "ProviderError", T0 + 20)
    assert not limiter.allow(KEY, "Throttled", T0 + 30)
    # other objects are limited on their own
    assert limiter.allow(("ExternalSecret", "shop", "other"), "ProviderError", T0 + 30)
    # the window ends
    assert limiter.allow(KEY, "ProviderError", T0 + 300)
    assert not limiter.allow(KEY, "ProviderError", T0 + 301)


def test_a_success_makes_the_next_failure_news_again() -> None:
    limiter = FailureLimiter(300.0)
    assert limiter.allow(KEY, "ProviderError", T0)
    limiter.forget(KEY)
    assert limiter.allow(KEY, "ProviderError", T0 + 1)
